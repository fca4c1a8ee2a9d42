"""The paper's figures beside results: the right figure for each benchmark and metric, none where it gave none."""

from __future__ import annotations

from cpedit.eval.paper import paper_figure


def test_figures_match_the_reference_in_cpedits_units() -> None:
    assert paper_figure("nudity", "nudity_total").value == 148
    assert paper_figure("clip-score", "clip_score").value == 27.93
    assert paper_figure("fid", "fid").value == 29.56
    assert paper_figure("classify", "erased_accuracy", {"family": "artists"}).value == 0.245  # 24.5 %
    assert paper_figure("classify", "preserved_accuracy", {"family": "artists"}).describe().startswith("0.089 (drop")
    assert paper_figure("attack-unlearndiffatk", "attack_success_rate").value == 0.648
    assert paper_figure("attack-p4d", "attack_success_rate").value == 0.391


def test_no_figure_where_the_paper_gave_none() -> None:
    assert paper_figure("classify", "erased_accuracy", {"family": "objects"}) is None
    assert paper_figure("attack-ring-a-bell", "attack_success_rate") is None
    assert paper_figure("nudity", "nudity_images") is None
    assert paper_figure("shapes", "erased") is None
