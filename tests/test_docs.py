"""The README and docs/ link to each other: every relative link must reach a file, and every anchor a heading."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", flags=re.M | re.S)
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def prose(text: str) -> str:
    """``text`` without fenced code blocks and inline code, where brackets and ``#`` are not Markdown."""
    return re.sub(r"`[^`\n]*`", "", FENCE.sub("", text))


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())  # a link: its text
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every heading anchor of ``page``, with GitHub's ``-1``, ``-2`` suffixes for repeated headings."""
    seen: dict[str, int] = {}
    found = set()
    for heading in re.findall(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", FENCE.sub("", page.read_text(encoding="utf-8")), re.M):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def broken_links(page: Path) -> list[str]:
    """The relative links of ``page`` that reach no file, or an anchor that is not a heading there."""
    broken = []
    for target in LINK.findall(prose(page.read_text(encoding="utf-8"))):
        if re.match(r"[a-z][a-z0-9+.-]*:", target, flags=re.I):  # https:, mailto:: not relative
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / unquote(path)).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no such file")
        elif anchor and (file.suffix != ".md" or unquote(anchor) not in anchors(file)):
            broken.append(f"{target}: no heading #{anchor} in {file.name}")
    return broken


def test_anchors_are_githubs() -> None:
    assert slug("Fidelity to the authors' code") == "fidelity-to-the-authors-code"
    assert slug("`cpedit eval clip-score` and `cpedit eval fid`") == "cpedit-eval-clip-score-and-cpedit-eval-fid"
    assert slug("Several GPUs or nodes: `torchrun` and `accelerate launch`") == (
        "several-gpus-or-nodes-torchrun-and-accelerate-launch"
    )
    assert slug("Concealment: `--conceal gaussian`") == "concealment---conceal-gaussian"


def test_a_broken_link_or_anchor_is_found(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Other\n\n## A part\n\n## A part\n", encoding="utf-8")
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n## Here\n\n[ok](other.md#a-part) [ok](other.md#a-part-1) [ok](#here) [web](https://x.org/a#b)\n"
        "[gone](missing.md) [bad anchor](other.md#nowhere) ![img](other.md#a-part-2)\n\n"
        "```sh\n# not a heading\n[not](a-link.md)\n```\n`[not](code.md)`\n",
        encoding="utf-8",
    )
    assert [problem.split(":")[0] for problem in broken_links(page)] == [
        "missing.md",
        "other.md#nowhere",
        "other.md#a-part-2",
    ]


def test_every_relative_link_of_the_readme_and_the_docs_resolves() -> None:
    assert len(PAGES) > 5, "docs/ holds the reference pages"
    failures = [f"{page.relative_to(ROOT)}: {problem}" for page in PAGES for problem in broken_links(page)]
    assert not failures, "\n".join(failures)


def test_the_readme_links_every_docs_page_and_stays_short() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    linked = {target.partition("#")[0] for target in LINK.findall(prose(readme))}
    assert {f"docs/{page.name}" for page in PAGES[1:]} <= linked
    assert len(readme.splitlines()) < 400, "README.md is a newcomer's page: reference goes into docs/"


def test_the_python_api_lists_every_error_reason() -> None:
    from cpedit.errors import REASONS

    page = (ROOT / "docs" / "python-api.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| `([a-z_]+)` \| (.+?) \|$", page, flags=re.M))
    missing = sorted(set(REASONS) - set(rows))
    assert not missing, f"docs/python-api.md's table of error reasons lacks: {', '.join(missing)}"
    unknown = sorted(set(rows) - set(REASONS))
    assert not unknown, f"docs/python-api.md lists reasons cpedit.errors.REASONS does not have: {', '.join(unknown)}"
