"""Global options (``--env``, ``--verbose``, ``--log-format``) before or after any command.

The root callback declares them once. Every command and sub-group built with
:class:`GlobalOptionsCommand` / :class:`GlobalOptionsGroup` accepts the same options again, lists
them in its ``--help`` (panel "Global options"), and hands what was typed on the command line to
the invocation's :class:`~syncpipe.cli.context.AppContext` before the command runs, so
``syncpipe deploy --env staging`` is ``syncpipe --env staging deploy``.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Any

from typer.core import TyperCommand, TyperGroup

if TYPE_CHECKING:
    import typer

GLOBAL_OPTIONS = ("env", "log_format", "verbose")
GLOBAL_PANEL = "Global options"


class LogFormat(StrEnum):
    """Console log format (``--log-format``)."""

    auto = "auto"
    console = "console"
    json = "json"


def _root_globals(ctx: typer.Context) -> list[Any]:
    root = ctx.find_root().command
    return [p for p in root.params if p.name in GLOBAL_OPTIONS]


def _with_globals(ctx: typer.Context, params: list[Any]) -> list[Any]:
    if ctx.parent is None:  # the root declares them itself
        return params
    own = {p.name for p in params}
    extra = [p for p in _root_globals(ctx) if p.name not in own]
    help_options = [p for p in params if getattr(p, "name", None) == "help"]
    rest = [p for p in params if p not in help_options]
    return [*rest, *extra, *help_options]


def _apply_globals(ctx: typer.Context) -> None:
    """Move this command's global options from its parameters into the AppContext."""
    typed: dict[str, Any] = {}
    for name in GLOBAL_OPTIONS:
        if name not in ctx.params:
            continue
        value = ctx.params.pop(name)
        source = ctx.get_parameter_source(name)
        if source is not None and source.name == "COMMANDLINE":
            typed[name] = value
    app_ctx = ctx.find_root().obj
    if typed and app_ctx is not None:
        fmt = typed.get("log_format")
        app_ctx.apply_globals(
            env=typed.get("env"),
            log_format=fmt.value if isinstance(fmt, LogFormat) else fmt,
            verbose=int(typed.get("verbose") or 0),
        )


class GlobalOptionsCommand(TyperCommand):
    """A command that also accepts the global options."""

    def get_params(self, ctx: typer.Context) -> list[Any]:  # type: ignore[override]
        return _with_globals(ctx, super().get_params(ctx))

    def invoke(self, ctx: typer.Context) -> Any:  # type: ignore[override]
        _apply_globals(ctx)
        return super().invoke(ctx)


class GlobalOptionsGroup(TyperGroup):
    """A group (the root, or ``review``) whose commands all pass through the error boundary."""

    def get_params(self, ctx: typer.Context) -> list[Any]:  # type: ignore[override]
        return _with_globals(ctx, super().get_params(ctx))

    def invoke(self, ctx: typer.Context) -> Any:  # type: ignore[override]
        if ctx.parent is not None:
            _apply_globals(ctx)
            return super().invoke(ctx)
        from syncpipe.cli.errors import boundary

        with boundary(ctx):
            return super().invoke(ctx)
