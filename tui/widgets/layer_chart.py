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


MIN_BAR = 3
"""The narrowest bar drawn (cells); the count always shows in full."""


def chart_lines(per_layer: dict[str, int], *, width: int, max_bar: int = 30) -> list[tuple[str, str, str]]:
    """(layer name, bar, count) rows that fit ``width`` cells: names and counts in full, the bar takes what is
    left (at most ``max_bar`` cells; a long name is cut before a count ever is)."""
    names = [short_layer_name(key) for key in per_layer]
    counts = [f"{value:,}" for value in per_layer.values()]
    count_width = max(len(c) for c in counts)
    name_width = max(len(n) for n in names)
    room = width - count_width - 2  # a space after the name and one before the count
    name_width = max(1, min(name_width, room - MIN_BAR))
    bar_width = max(0, min(max_bar, room - name_width))
    largest = max(per_layer.values())
    return [
        (name[:name_width].ljust(name_width), bar(value, largest, bar_width).ljust(bar_width), count.rjust(count_width))
        for name, value, count in zip(names, per_layer.values(), counts, strict=True)
    ]


class LayerChart(Static):
    """Pruned weights per layer of a selection, one bar per layer (largest first when ``limit`` cuts the list).

    The bars take the width left beside the names and the counts, so every count shows in full
    at any terminal width.
    """

    DEFAULT_CSS = """
    LayerChart { height: auto; width: 1fr; }
    """

    def __init__(self, *, max_bar: int = 30, limit: int | None = None, id: str | None = None) -> None:
        super().__init__(id=id)
        self.max_bar = max_bar
        self.limit = limit
        self._rows: dict[str, int] | None = None
        self._empty = ""

    def show(self, per_layer: dict[str, int] | None, *, empty: str = "no selection yet") -> None:
        """Render ``per_layer`` (layer key -> pruned weights), in the model's layer order."""
        rows = dict(per_layer or {})
        if self.limit is not None and len(rows) > self.limit:
            rows = dict(sorted(rows.items(), key=lambda kv: -kv[1])[: self.limit])
        self._rows, self._empty = rows or None, empty
        self._draw()

    def on_resize(self) -> None:
        self._draw()

    def _draw(self) -> None:
        if not self._rows:
            self.update(Text(self._empty, style="dim"))
            return
        width = self.content_size.width or 60  # before the first layout: any width (drawn again on resize)
        text = Text()
        for name, drawn, count in chart_lines(self._rows, width=width, max_bar=self.max_bar):
            text.append(f"{name} ", style="bold")
            text.append(drawn, style="green")
            text.append(f" {count}\n")
        text.rstrip()
        self.update(text)
