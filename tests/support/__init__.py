"""Code the tests share: the Hub emulator, the naive reference, helpers."""
