"""The ``cpedit`` command line (click + rich)."""
