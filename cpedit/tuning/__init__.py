"""Sweeps and auto-tuning of prune settings, measured by the evaluation suite.

:func:`sweep` (``cpedit sweep``) measures a grid of settings with one calibration per hook
target and writes ``sweep.json`` and ``sweep.png``; :func:`tune` (``cpedit tune``) searches the
least pruning that meets an erasure goal within a preservation budget. Both measure a point
exactly as ``cpedit prune`` with its settings followed by ``cpedit eval`` would.

Importing :mod:`cpedit.tuning` is cheap (no torch): names come from their modules on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cpedit._lazy import lazy_exports

if TYPE_CHECKING:
    from cpedit.tuning.grid import SweepResult, read_sweep, sweep
    from cpedit.tuning.measure import EvaluationPlan, Measurement, measure, plan_evaluation
    from cpedit.tuning.points import Point, PointSettings
    from cpedit.tuning.search import TuneResult, tune

_EXPORTS = {
    "EvaluationPlan": "cpedit.tuning.measure",
    "Measurement": "cpedit.tuning.measure",
    "Point": "cpedit.tuning.points",
    "PointSettings": "cpedit.tuning.points",
    "SweepResult": "cpedit.tuning.grid",
    "TuneResult": "cpedit.tuning.search",
    "measure": "cpedit.tuning.measure",
    "pareto_front": "cpedit.tuning.points",
    "plan_evaluation": "cpedit.tuning.measure",
    "read_sweep": "cpedit.tuning.grid",
    "sweep": "cpedit.tuning.grid",
    "tune": "cpedit.tuning.search",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
