"""``cpedit eval fid``: FID of an edit's images against a reference set (Inception v3 features).

The reference is a folder of (real) images, or, without one, the base model's images on the
same prompts and seeds (then only ``after`` is reported). With a reference folder and the
base model evaluated, ``before`` is the base model's FID against it. The result, in
``EDITED/conceptprune/eval/fid.json``::

    {"fid": {"after": 12.3}, "protocol": {"reference": {"kind": "base_model_images", ...}, ...}}
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cpedit.errors import CpeditError
from cpedit.eval.benchmark import Benchmark, BenchmarkRun, Phase, PromptOptions, prepare_prompts
from cpedit.eval.engine import ImageEntry, RenderedImages
from cpedit.progress import ProgressEvent, check_cancel

FID = "fid"

__all__ = ["FidBenchmark", "FidOptions"]


@dataclass(frozen=True, kw_only=True)
class FidOptions(PromptOptions):
    """Options of ``fid`` (and the prompt set of :class:`~cpedit.eval.benchmark.PromptOptions`).

    Attributes:
        reference: A folder of reference images (None: the base model's images).
        feature_extractor: A :class:`cpedit.eval.metrics.FeatureExtractor` (default:
            torch-fidelity's ``inception-v3-compat``, :func:`cpedit.eval.metrics.inception_extractor`).
    """

    reference: str | os.PathLike[str] | None = None
    feature_extractor: Any = None


class FidBenchmark(Benchmark):
    """FID against a reference folder or the base model's own images (lower is better)."""

    name = FID
    role = "preservation"
    options_type = FidOptions
    preserved_metric = "fid"
    preserved_higher_is_better = False
    no_interval = {
        "fid": "FID compares two sets' feature statistics (mean and covariance): it is not a mean over "
        "images, and it is biased by the number of images, so no per-image interval is given; "
        "compare FIDs only at equal image counts"
    }

    def prepare(self, run: BenchmarkRun) -> None:
        """The prompts, the reference files, then the Inception network (unless given)."""
        from cpedit.eval.metrics import inception_extractor, reference_images

        prepare_prompts(run)
        reference = run.options.reference
        run.state["reference_files"] = reference_images(reference) if reference is not None else None
        run.needs_base = reference is None
        if len(run.prompts) * run.images.images_per_prompt < 2:
            raise CpeditError("FID needs at least 2 generated images: give more prompts or images per prompt")
        extractor = run.options.feature_extractor
        if extractor is None:

            def load() -> Any:
                run.emit(ProgressEvent(stage="load", message="loading the Inception network"))
                return inception_extractor(device=run.compute.device)

            extractor = run.load_judge(("inception", run.compute.device), load)
        run.judge = extractor
        run.metric_model = getattr(extractor, "name", type(extractor).__name__)

    def _features(self, run: BenchmarkRun, paths: list[Path], what: str) -> Any:
        from cpedit.eval.metrics import image_features, load_images

        check_cancel(run.cancel, "during the evaluation")
        run.emit(ProgressEvent(stage="evaluate", message=f"features of {len(paths)} {what} images"))
        return image_features(run.judge, load_images(paths), batch_size=max(run.images.batch_size, 8))

    def score(self, run: BenchmarkRun, phase: Phase, entries: Sequence[ImageEntry], folder: Path) -> Any:
        """The Inception features of the phase's images."""
        return self._features(run, [e.path(folder) for e in entries], "base" if phase == "before" else "edited")

    def metrics(self, run: BenchmarkRun, measured: dict[str, Any]) -> dict[str, dict[str, float]]:
        """FID of the edited (and base) features against the reference's, or the edited against the base."""
        from cpedit.eval.metrics import fid_of_features

        reference_files = run.state["reference_files"]
        values: dict[str, float] = {}
        if reference_files is None:
            values["after"] = fid_of_features(measured["after"], measured["before"])  # the base is always rendered here
        else:
            reference_features = self._features(run, reference_files, "reference")
            if "before" in measured:
                values["before"] = fid_of_features(measured["before"], reference_features)
            values["after"] = fid_of_features(measured["after"], reference_features)
        return {"fid": values}

    def protocol_fields(self, run: BenchmarkRun, measured: dict[str, Any], rendered: RenderedImages) -> dict[str, Any]:
        """What the images were compared with."""
        reference_files = run.state["reference_files"]
        if reference_files is None:
            return {"reference": {"kind": "base_model_images", "images": len(rendered.base)}}
        name = Path(run.options.reference).name
        return {"reference": {"kind": "folder", "name": name, "images": len(reference_files)}}
