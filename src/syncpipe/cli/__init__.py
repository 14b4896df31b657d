"""The ``syncpipe`` command line. Commands are thin: parse options, call a service, render.

Commands are registered in :mod:`syncpipe.cli.app`; this package only re-exports the app.
"""

from __future__ import annotations

from syncpipe.cli.app import app, main

__all__ = ["app", "main"]
