"""Development tools that are not installed: they live in the repository, outside the ``cpedit`` package.

- :mod:`devtools.builders`: offline random-weight pipelines for the tests and benchmarks.
- :mod:`devtools.train_shapes`: the training script of the built-in ``builtin:shapes`` model
  (``python -m devtools.train_shapes`` from the repository root).

``pip install cpedit`` ships neither (the wheel holds only ``cpedit/``); use them from a checkout.
"""
