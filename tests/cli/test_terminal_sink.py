"""Control characters from recipes, results and Hub text never reach the terminal raw: every console of the
CLI strips them as it renders (one sink), and errors show them as escapes."""

from __future__ import annotations

import io
from pathlib import Path

from click.testing import CliRunner
from rich.table import Table
from rich.text import Text

from cpedit.cli.layout import SafeConsole, stderr_console, stdout_console
from cpedit.cli.main import cli

OSC_TITLE = "\x1b]0;pwned\x07"
CLEAR = "\x1b[2J\x9b2J"  # ESC CSI and the C1 CSI


def _assert_clean(text: str) -> None:
    assert "\x1b]0;" not in text and "\x07" not in text and "\x9b" not in text and "\x1b[2J" not in text


def test_the_consoles_strip_control_characters_but_keep_their_own_styles() -> None:
    assert isinstance(stdout_console(), SafeConsole) and isinstance(stderr_console(), SafeConsole)
    buffer = io.StringIO()
    console = SafeConsole(file=buffer, force_terminal=True, width=100, color_system="standard", log_path=False)
    table = Table("name", "value")
    table.add_row(f"recipe{OSC_TITLE}", Text(f"protocol{CLEAR} value", style="bold"))
    console.print(table)
    console.print(f"[red]note[/] {OSC_TITLE}line", highlight=False)
    console.log(f"log {OSC_TITLE}line")
    out = buffer.getvalue()
    _assert_clean(out)
    assert "\x1b[1m" in out and "\x1b[31m" in out  # rich's own styles still reach the terminal
    assert "]0;pwned" in out and "protocol" in out  # the text is shown, only its control characters dropped


def test_recipes_list_shows_hostile_names_and_concepts_without_their_escape_codes(tmp_path: Path) -> None:
    (tmp_path / f"evil{OSC_TITLE}.yaml").write_text("name: [not, a, slug]\n", encoding="utf-8")
    (tmp_path / "ok.yaml").write_text(
        'cpedit: 1\nname: ok\nconcept: "stripes\\e]0;pwned\\a"\nkind: style\n'
        'prompts: {target: ["a striped cat"], base: ["a cat"]}\n',
        encoding="utf-8",
    )
    result = CliRunner().invoke(cli, ["recipes", "list", str(tmp_path)])
    assert result.exit_code == 1, result.output  # the invalid one is a row with its error
    _assert_clean(result.output)
    assert "stripes" in result.output and "evil" in result.output


def test_an_error_about_a_hostile_path_shows_its_control_characters_as_escapes(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["card", str(tmp_path / f"out{OSC_TITLE}")])
    assert result.exit_code != 0
    _assert_clean(result.output)
    assert "\\x1b]0;pwned\\x07" in result.output
