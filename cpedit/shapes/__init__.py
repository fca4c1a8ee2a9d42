"""The built-in *shapes* world: a procedural scene generator, a small text-to-image model
trained on it, and an attribute classifier, so erasure can be run and measured offline.

* :mod:`cpedit.shapes.world`: the seeded scene generator and its captions (ground truth).
* :mod:`cpedit.shapes.classifier`: the attribute classifier that judges generated images.
* :mod:`cpedit.shapes.model`: where the shipped pipeline and classifier weights live.
* :mod:`cpedit.eval.shapes`: the ``cpedit eval shapes`` benchmark.
"""
