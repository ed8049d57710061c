"""ClickHouse SQL text that every layer writes the same way."""

from __future__ import annotations


def quote(text: str) -> str:
    """``text`` as a ClickHouse string literal.

    >>> quote("it's C:\\\\tmp")
    "'it\\\\'s C:\\\\\\\\tmp'"
    """
    escaped = text.replace("\\", "\\\\").replace("'", "\\'").replace("\0", "\\0")
    return f"'{escaped}'"
