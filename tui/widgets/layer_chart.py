"""A horizontal bar chart of pruned weights per layer (plain text, so it renders the same everywhere)."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

BLOCKS = " ▏▎▍▌▋▊▉█"


def short_layer_name(key: str) -> str:
    """``unet:down_blocks.1.attentions.0.transformer_blocks.0.ff.net.2`` -> ``down1.att0.tb0``."""
    name = key.split(":", 1)[-1]
    for long, short in (
        ("down_blocks.", "down"),
        ("up_blocks.", "up"),
        ("mid_block.", "mid."),
        ("attentions.", "att"),
        ("transformer_blocks.", "tb"),
        ("single_transformer_blocks.", "stb"),
        (".ff.net.2", ""),
        (".ff.net.0.proj", ".in"),
        (".ff_context.net.2", ".ctx"),
        (".attn2.to_v", ".v"),
        (".attn2.to_k", ".k"),
        ("text_model.encoder.layers.", "text"),
        (".mlp.fc2", ""),
    ):
        name = name.replace(long, short)
    return name


def bar(value: int, largest: int, width: int) -> str:
    """A bar of ``width`` cells at most, in eighths of a cell."""
    if largest <= 0 or value <= 0:
        return ""
    eighths = max(1, round(value / largest * width * 8))
    full, part = divmod(eighths, 8)
    return "█" * full + (BLOCKS[part] if part else "")


class LayerChart(Static):
    """Pruned weights per layer of a selection, one bar per layer (largest first when ``sort``)."""

    DEFAULT_CSS = """
    LayerChart { height: auto; }
    """

    def __init__(self, *, bar_width: int = 30, limit: int | None = None, id: str | None = None) -> None:
        super().__init__(id=id)
        self.bar_width = bar_width
        self.limit = limit

    def show(self, per_layer: dict[str, int] | None, *, empty: str = "no selection yet") -> None:
        """Render ``per_layer`` (layer key -> pruned weights), in the model's layer order."""
        if not per_layer:
            self.update(Text(empty, style="dim"))
            return
        rows = list(per_layer.items())
        if self.limit is not None and len(rows) > self.limit:
            rows = sorted(rows, key=lambda kv: -kv[1])[: self.limit]
        names = [short_layer_name(key) for key, _ in rows]
        width = max(len(n) for n in names)
        largest = max(v for _, v in rows)
        text = Text()
        for name, (_, value) in zip(names, rows, strict=True):
            text.append(f"{name:<{width}} ", style="bold")
            text.append(f"{bar(value, largest, self.bar_width):<{self.bar_width}}", style="green")
            text.append(f" {value:,}\n")
        self.update(text)
