"""The README's first command erases on the built-in model, measured on a seed nothing was tuned on.

The shipped ``shapes-striped`` recipe was chosen on evaluation seed 0 (and checked on seed 1);
this test measures it on seed 7, with the same CLI a newcomer runs, and bounds the result loosely
(the measured numbers and their intervals are in docs/builtin-model.md), so it fails when the
erasure is gone, not when one image reads differently on another machine.
"""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from cpedit.cli.main import cli

EVAL_SEED = 7
"""Neither the tuning seed (0) nor the check seed (1) of the shipped recipe."""
IMAGES = 48
ERASED_AFTER_AT_MOST = 0.85
"""Measured 0.708 (Wilson 95%: 0.568-0.818) on this seed with these images (docs/builtin-model.md)."""
ERASED_BEFORE_AT_LEAST = 0.9
PRESERVATION_DROP_AT_MOST = 0.05


def test_readme_first_command_erases_stripes_on_a_held_out_seed(tmp_path: Path) -> None:
    out, result_file = tmp_path / "shapes-no-stripes", tmp_path / "striped.json"
    pruned = CliRunner().invoke(cli, ["prune", "--recipe", "shapes-striped", "--out", str(out)])
    assert pruned.exit_code == 0, pruned.output
    evaluated = CliRunner().invoke(
        cli,
        ["eval", "shapes", str(out), "--images", str(IMAGES), "--seed", str(EVAL_SEED), "--json", str(result_file)],
    )
    assert evaluated.exit_code == 0, evaluated.output
    measured = json.loads(result_file.read_text())
    erased, preserved = measured["erased"], measured["preserved"]
    assert erased["before"] >= ERASED_BEFORE_AT_LEAST, measured  # the base model draws the stripes asked for
    assert erased["after"] <= ERASED_AFTER_AT_MOST, measured  # and the edited one mostly does not
    assert preserved["before"] - preserved["after"] <= PRESERVATION_DROP_AT_MOST, measured
