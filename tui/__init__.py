"""cpedit's terminal app (``cpedit tui``): pick a model, queue concepts, run, tune, preview and push.

The app renders a plain :class:`tui.state.AppState` (testable without a UI) and runs every slow
step of cpedit's public API in a thread worker, its progress events coming back as Textual
messages. Importing this package imports neither Textual nor torch; :func:`tui.app.run_app` does.
"""
