"""The app's screens (one module each, its stylesheet beside it) and its dialogs."""
