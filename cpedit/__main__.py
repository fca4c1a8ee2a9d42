"""``python -m cpedit``: the ``cpedit`` command, for launchers that run modules (``torchrun -m cpedit eval ...``)."""

from cpedit.cli.main import main

if __name__ == "__main__":
    main()
