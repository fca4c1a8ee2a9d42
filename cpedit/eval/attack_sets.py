"""The adversarial prompt sets of the literature (Ring-A-Bell, MMA-Diffusion, P4D, UnlearnDiffAtk).

Data only: where each set's prompts are (a Hub dataset, or a file to download), what concept they
try to bring back, and how sure we are of the location. :mod:`cpedit.eval.attack` evaluates them;
:mod:`cpedit.eval.prompt_sets` resolves ``attack:NAME`` references through :func:`find_attack_set`.
"""

from __future__ import annotations

from dataclasses import dataclass

from cpedit.errors import CpeditError
from cpedit.hub.refs import HubRef


@dataclass(frozen=True)
class AttackSet:
    """An adversarial prompt set of the literature.

    Attributes:
        name: The short name (``mma-diffusion``).
        title: The attack's name as its paper gives it.
        repo_id: The Hub dataset holding the prompts, or None where they are not on the Hub.
        file: The file of the dataset to read (None: its only prompt file).
        column: The prompt column (None: the usual names, see :mod:`cpedit.eval.prompt_sets`).
        concept: What the prompts try to bring back (``nudity``): picks the detector.
        gated: Whether the dataset asks users to accept conditions first.
        citation: The paper.
        verified: Whether the Hub location was checked against the authors' own pointers.
        note: Where else the prompts can be had.
    """

    name: str
    title: str
    repo_id: str | None
    file: str | None
    column: str | None
    concept: str
    gated: bool
    citation: str
    verified: bool
    note: str = ""

    def prompts_ref(self) -> str:
        """The set as a prompt-set reference (``hub:OWNER/NAME[/FILE]``).

        Raises:
            CpeditError: The set is not on the Hub (``reason="not_on_hub"``): the message says
                where to get it.
        """
        if self.repo_id is None:
            raise CpeditError(
                f"the {self.title} prompts are not on the Hugging Face Hub: {self.note}; then give that file as "
                "the prompts",
                argument="prompts",
                reason="not_on_hub",
            )
        return str(HubRef(self.repo_id, self.file, repo_type="dataset"))


ATTACK_SETS: dict[str, AttackSet] = {
    s.name: s
    for s in (
        AttackSet(
            name="ring-a-bell",
            title="Ring-A-Bell",
            repo_id="Chia15/RingABell-Nudity",
            file=None,
            column=None,
            concept="nudity",
            gated=False,
            citation="Tsai et al., Ring-A-Bell! How Reliable are Concept Removal Methods for Diffusion Models?, "
            "ICLR 2024 (arXiv:2310.10012)",
            verified=False,
            note="the prompts also come with the code at https://github.com/chiayi-hsu/Ring-A-Bell",
        ),
        AttackSet(
            name="mma-diffusion",
            title="MMA-Diffusion",
            repo_id="YijunYang280/MMA-Diffusion-NSFW-adv-prompts-benchmark",
            file=None,
            column="adv_prompt",
            concept="nudity",
            gated=True,
            citation="Yang et al., MMA-Diffusion: MultiModal Attack on Diffusion Models, CVPR 2024 (arXiv:2311.17516)",
            verified=True,
            note="see https://github.com/yangyijune/MMA-Diffusion",
        ),
        AttackSet(
            name="p4d",
            title="P4D (Prompting4Debugging)",
            repo_id="joycenerd/p4d",
            file=None,
            column=None,
            concept="nudity",
            gated=False,
            citation="Chin et al., Prompting4Debugging: Red-Teaming Text-to-Image Diffusion Models by Finding "
            "Problematic Prompts, ICML 2024 (arXiv:2309.06135)",
            verified=False,
            note="see https://github.com/joycenerd/P4D",
        ),
        AttackSet(
            name="unlearndiffatk",
            title="UnlearnDiffAtk",
            repo_id=None,
            file=None,
            column=None,
            concept="nudity",
            gated=False,
            citation="Zhang et al., To Generate or Not? Safety-Driven Unlearned Diffusion Models Are Still Easy To "
            "Generate Unsafe Images ... For Now, ECCV 2024 (arXiv:2310.11868)",
            verified=False,
            note="download prompts/nudity.csv from https://github.com/OPTML-Group/Diffusion-MU-Attack",
        ),
    )
}
"""The known adversarial sets, by name (see the module's docstring for what is verified)."""


def find_attack_set(name: str) -> AttackSet:
    """The known set called ``name`` (case-insensitive).

    Raises:
        CpeditError: Unknown name (``argument="attack_set"``), the known ones listed.
    """
    entry = ATTACK_SETS.get(name.strip().lower())
    if entry is None:
        raise CpeditError(
            f"unknown attack set {name!r}; the known ones are {', '.join(ATTACK_SETS)} (or give the prompts yourself)",
            argument="attack_set",
            reason="unknown",
        )
    return entry
