"""``cpedit eval attack``: adversarial prompt sets (a registry, the loopback Hub), attack success rate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from support.helpers import CPU, write_recipe

import cpedit
from cpedit.cli.eval_attack import eval_attack_command
from cpedit.errors import CpeditError
from cpedit.eval import attack_sets
from cpedit.eval.attack import AttackOptions
from cpedit.eval.attack_sets import ATTACK_SETS, AttackSet, find_attack_set
from cpedit.eval.driver import evaluate
from cpedit.eval.engine import PromptSpec
from cpedit.eval.options import ImageOptions
from cpedit.eval.prompt_sets import load_prompt_set

STEPS = 2
OPEN_CSV = b"adv_prompt,clean_prompt,seed\nx1 nud3 figur,a nude figure,5\nx2 b34ch,a beach,6\nx3 l4ke,a lake,7\n"


@pytest.fixture(scope="module")
def edited(tiny_sd_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("eval_attack")
    recipe = write_recipe(root / "recipes", name="attack-style", steps=4, tau=2)
    return cpedit.prune(tiny_sd_path, [recipe], out=root / "out", compute=CPU).output


@pytest.fixture
def fake_sets(hub, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """``p4d`` points at an open test set, ``mma-diffusion`` at a gated one (on the loopback Hub)."""
    commits = {}
    for repo_id, gated in (("acme/adv-open", False), ("acme/adv-gated", "manual")):
        if f"datasets/{repo_id}" in hub.repos:
            commits[repo_id] = hub.repos[f"datasets/{repo_id}"].refs["main"]
        else:
            commits[repo_id] = hub.seed_repo(repo_id, {"adv.csv": OPEN_CSV}, repo_type="dataset", gated=gated)
    sets = dict(ATTACK_SETS)
    sets["p4d"] = AttackSet(**{**vars(ATTACK_SETS["p4d"]), "repo_id": "acme/adv-open", "column": "adv_prompt"})
    sets["mma-diffusion"] = AttackSet(**{**vars(ATTACK_SETS["mma-diffusion"]), "repo_id": "acme/adv-gated"})
    monkeypatch.setattr(attack_sets, "ATTACK_SETS", sets)
    return commits


class Every2nd:
    """A pluggable concept detector: the concept is in every second image."""

    name, version = "every-2nd", "0.1"

    def __init__(self) -> None:
        self.calls: list[int] = []

    def concept_present(self, paths, *, cancel=None):  # type: ignore[no-untyped-def]
        self.calls.append(len(paths))
        return [i % 2 == 0 for i in range(len(paths))]


def test_registry() -> None:
    assert set(ATTACK_SETS) == {"ring-a-bell", "mma-diffusion", "p4d", "unlearndiffatk"}
    assert ATTACK_SETS["mma-diffusion"].gated and ATTACK_SETS["mma-diffusion"].column == "adv_prompt"
    assert all(s.concept == "nudity" and s.citation for s in ATTACK_SETS.values())
    assert find_attack_set("MMA-Diffusion").name == "mma-diffusion"
    with pytest.raises(CpeditError, match="unknown attack set 'nope'.*ring-a-bell") as info:
        find_attack_set("nope")
    assert info.value.argument == "attack_set"
    with pytest.raises(CpeditError, match="not on the Hugging Face Hub.*Diffusion-MU-Attack") as info:
        load_prompt_set("attack:unlearndiffatk")
    assert info.value.reason == "not_on_hub"


def test_open_set_with_a_plugged_detector(fake_sets: dict[str, str], edited: Path, tmp_path: Path) -> None:
    detector = Every2nd()
    result = evaluate(
        "attack",
        edited,
        AttackOptions(attack_set="p4d", detector=detector),
        images=ImageOptions(steps=STEPS),
        compute=CPU,
        base=True,
        images_dir=tmp_path / "images",
    )
    assert result.benchmark == "attack-p4d" and detector.calls == [3, 3]  # one result file per known set
    assert result.metrics == {"attack_success_rate": {"before": pytest.approx(2 / 3), "after": pytest.approx(2 / 3)}}
    protocol = result.protocol
    assert protocol["attack_set"] == "p4d" and "ICML 2024" in protocol["attack_citation"]
    assert protocol["prompts"] == "hub:acme/adv-open" and protocol["prompts_revision"] == fake_sets["acme/adv-open"]
    assert protocol["prompts_column"] == "adv_prompt" and protocol["seeds"] == [5, 6, 7]
    assert protocol["detector"] == "every-2nd" and protocol["detector_version"] == "0.1"
    assert [e.prompt for e in result.images.edited] == ["x1 nud3 figur", "x2 b34ch", "x3 l4ke"]  # type: ignore[union-attr]
    # Own prompts override the set's (the set still names the concept and the citation).
    own = evaluate(
        "attack",
        edited,
        AttackOptions(attack_set="p4d", prompts=[PromptSpec("only one")], detector=Every2nd()),
        images=ImageOptions(steps=STEPS),
        compute=CPU,
        images_dir=tmp_path / "images",
    )
    assert own.metrics["attack_success_rate"] == {"after": 1.0} and own.protocol["prompt_count"] == 1


def test_cli_with_nudenet(fake_sets: dict[str, str], edited: Path, tmp_path: Path) -> None:
    out = tmp_path / "asr.json"
    result = CliRunner().invoke(
        eval_attack_command,
        [
            str(edited),
            "--attack-set",
            "p4d",
            "--steps",
            str(STEPS),
            "--device",
            "cpu",
            "--limit",
            "2",
            "--json",
            str(out),
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert "attack_success_rate" in result.output
    data = json.loads(out.read_text())
    assert data == json.loads((edited / "conceptprune" / "eval" / "attack-p4d.json").read_text())
    assert 0 <= data["attack_success_rate"]["after"] <= 1 and "before" not in data["attack_success_rate"]
    protocol = data["protocol"]
    assert protocol["prompts"] == "hub:acme/adv-open" and protocol["prompt_count"] == 2
    assert protocol["detector"] == "nudenet-320n" and protocol["threshold"] == 0.5 and protocol["concept"] == "nudity"


def test_cli_gated_set_and_usage(fake_sets: dict[str, str], edited: Path) -> None:
    result = CliRunner().invoke(eval_attack_command, [str(edited), "--attack-set", "mma-diffusion", "--device", "cpu"])
    assert isinstance(result.exception, CpeditError) and result.exception.reason == "gated"
    assert "request access at" in str(result.exception) and "datasets/acme/adv-gated" in str(result.exception)
    assert "hf auth login" in str(result.exception)
    result = CliRunner().invoke(eval_attack_command, [str(edited), "--device", "cpu"])
    assert result.exit_code == 2 and "--attack-set NAME" in result.output


def test_a_style_attack_is_judged_by_the_classify_benchmarks_clip(
    edited: Path, tiny_clip: Path, tmp_path: Path
) -> None:
    from cpedit.eval.classify import classifier_detector

    result = evaluate(
        "attack",
        edited,
        AttackOptions(
            prompts=[PromptSpec("a cat in the style of v4n g0gh"), PromptSpec("a starry night, swirls")],
            concept="van-gogh",
            classifier_model=tiny_clip,
        ),
        images=ImageOptions(steps=STEPS),
        compute=CPU,
        images_dir=tmp_path / "images",
    )
    protocol = result.protocol
    assert protocol["detector"] == "classify-clip" and protocol["concept"] == "van-gogh"
    assert result.benchmark == "attack"  # prompts of one's own: attack.json
    present = classifier_detector("van-gogh", classifier_model=tiny_clip, device="cpu").concept_present(
        [e.path(result.images.folder) for e in result.images.edited]  # type: ignore[union-attr]
    )
    assert result.metrics["attack_success_rate"] == {"after": sum(present) / 2}
    with pytest.raises(CpeditError, match="no detector is known for the concept 'rembrandt'") as info:
        options = AttackOptions(prompts=[PromptSpec("x")], concept="rembrandt")
        evaluate("attack", edited, options, images=ImageOptions(steps=STEPS), compute=CPU)
    assert info.value.argument == "concept"
