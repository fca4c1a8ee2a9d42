"""Text from recipes and results never adds structure to the model card: rendered as CommonMark, a card
built from hostile text has exactly the elements of one built from plain text."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest
import yaml
from markdown_it import MarkdownIt

import cpedit
from cpedit.models.compute import ComputeOptions
from cpedit.publish.card import build_model_card
from cpedit.publish.markdown import md_code, md_fenced, md_text
from cpedit.recipes.sources import resolve_recipe

HOSTILE_DESCRIPTION = (
    "Looks harmless.\n"
    "   ```\n"  # an indented closing fence: it used to end the card's YAML block
    "# Injected heading\n"
    "[click me](https://evil.example) ![pixel](https://evil.example/p.png)\n"
    "<script>alert(1)</script> <img src=x onerror=alert(1)>\n"
    "<details><summary>x</summary>\n\n"
    "* list | cell | *em* `code` ~~gone~~ &lt; \x1b]0;pwned\x07 \u202edesrever"
)
HOSTILE_CONCEPT = "stripes](https://evil.example) <b>bold</b> # *x*"
HOSTILE_METRIC = "score<img src=x>|[l](u)"
HOSTILE_PROTOCOL = {
    "images": "4 <script>x</script>",
    "steps": "![i](https://evil.example/i.png)",
    "prompts": "p.txt\n\n# Heading from a protocol\n\n<iframe src=x>",
    "metric_model": "`m` [a](b) \x1b]0;title\x07",
}
HOSTILE_BENCHMARK = "bench [x](y) <u>"


def _recipe_text(description: str, concept: str) -> str:
    data = yaml.safe_load(resolve_recipe("shapes-striped").text)
    data.update(description=description, concept=concept)
    data["prune"]["timesteps"] = 2
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def _output(folder: Path, *, description: str, concept: str, metric: str, protocol: dict, benchmark: str) -> Path:
    recipe = folder / "shapes-striped.yaml"
    folder.mkdir(parents=True)
    recipe.write_text(_recipe_text(description, concept), encoding="utf-8")
    out = folder / "out"
    cpedit.prune("builtin:shapes", [str(recipe)], out=out, compute=ComputeOptions(device="cpu"))
    results = out / "conceptprune" / "eval"
    results.mkdir(parents=True)
    data = {metric: {"before": 0.5, "after": 0.25}, "protocol": protocol}
    (results / f"{benchmark}.json").write_text(json.dumps(data), encoding="utf-8")
    return out


@pytest.fixture(scope="module")
def cards(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    root = tmp_path_factory.mktemp("cards")
    plain = _output(
        root / "plain",
        description="Erases stripes.",
        concept="stripes",
        metric="score",
        protocol={"images": 4, "steps": 2, "prompts": "p.txt", "metric_model": "m"},
        benchmark="bench",
    )
    hostile = _output(
        root / "hostile",
        description=HOSTILE_DESCRIPTION,
        concept=HOSTILE_CONCEPT,
        metric=HOSTILE_METRIC,
        protocol=HOSTILE_PROTOCOL,
        benchmark=HOSTILE_BENCHMARK,
    )
    return build_model_card(plain), build_model_card(hostile)


def _body(card: str) -> str:
    """The card without its YAML front matter (the Hub renders only the rest)."""
    match = re.match(r"^---\n.*?\n---\n", card, re.DOTALL)
    assert match is not None
    return card[match.end() :]


def _elements(card: str) -> Counter:
    tokens = MarkdownIt("commonmark").enable("table").enable("strikethrough").parse(_body(card))
    found: Counter = Counter()
    for token in tokens:
        for inner in [token, *(token.children or [])]:
            if inner.type not in ("text", "softbreak", "inline"):
                found[inner.type] += 1
    return found


def test_hostile_recipe_and_result_text_adds_no_element_to_the_card(cards: tuple[str, str]) -> None:
    plain, hostile = cards
    assert _elements(hostile) == _elements(plain)
    found = _elements(hostile)
    assert found["html_block"] == found["html_inline"] == 0
    assert found["image"] == 0 and found["link_open"] == 2  # only cpedit's own: its PyPI page and the paper
    assert "\x1b" not in hostile and "\x07" not in hostile and "\u202e" not in hostile
    # the text is still there, as text
    html = MarkdownIt("commonmark").enable("table").render(_body(hostile))
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "# Injected heading" in html
    assert "score&lt;img src=x&gt;|[l](u)" in html


def test_the_front_matter_stays_yaml_whatever_the_text(cards: tuple[str, str]) -> None:
    _, hostile = cards
    front = yaml.safe_load(re.match(r"^---\n(.*?)\n---\n", hostile, re.DOTALL).group(1))  # type: ignore[union-attr]
    assert front["pipeline_tag"] == "text-to-image" and "conceptprune" in front["tags"]
    assert all(isinstance(tag, str) and "\n" not in tag for tag in front["tags"])


@pytest.mark.parametrize(
    "text",
    ["```", "a ``` b", "`x`", "```\n  ````\n```", "</code><script>", "\n\n# h\n\n", "_a_ *b* [c](d) <e> &amp; |"],
)
def test_each_escape_renders_its_text_and_nothing_else(text: str) -> None:
    md = MarkdownIt("commonmark").enable("table")
    paragraph = md.parse(f"x {md_text(text)} y")
    assert [t.type for t in paragraph[1].children] == ["text"]  # type: ignore[union-attr]
    code = md.parse(f"x {md_code(text)} y")[1].children
    assert [t.type for t in code] == ["text", "code_inline", "text"]  # type: ignore[union-attr]
    fenced = md.parse(md_fenced(text, info="yaml") + "\n# after\n")
    assert fenced[0].type == "fence" and fenced[0].content.rstrip("\n") == text.rstrip("\n")
