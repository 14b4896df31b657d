"""Short excerpts of input for messages: no error or log line quotes more than a few dozen
characters of a file, whatever the file holds (a 10,000-column header, a binary file)."""

from __future__ import annotations

#: The longest excerpt of input a message quotes.
EXCERPT_CHARS = 40


def cut(value: str | bytes, limit: int = EXCERPT_CHARS) -> str:
    """``value`` as a quoted excerpt of at most ``limit`` characters (``…`` marks a cut)."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="backslashreplace")
    value = value.replace("\x00", "\\x00")
    if len(value) > limit:
        value = value[: max(limit - 1, 1)] + "…"
    return repr(value)


def cut_list(names: list[str], limit: int = 5) -> str:
    """Up to ``limit`` names, each cut, and how many more there are."""
    shown = ", ".join(cut(n, 30) for n in names[:limit])
    more = len(names) - limit
    return f"{shown} and {more:,} more" if more > 0 else shown
