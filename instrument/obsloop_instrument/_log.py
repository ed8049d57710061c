"""A logger that imports ``logging`` when it first logs.

Why: ``logging`` (with ``traceback``, ``string``, ``weakref`` and ``threading`` behind it)
is about 5 ms of import on the benchmark machine, a sixth of the cold-start budget, and the
library only logs when something goes wrong (an export failed, a setting is invalid). The
records are the standard library's, under the same logger names as before.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not ``typing.TYPE_CHECKING``: no ``typing`` import at set-up
if TYPE_CHECKING:
    import logging
    from typing import Any


class _LazyLogger:
    """Forwards ``debug``/``warning``/``error``/``exception``/… to ``logging.getLogger(name)``."""

    __slots__ = ("_name", "_logger")

    def __init__(self, name: str) -> None:
        self._name = name
        self._logger: logging.Logger | None = None

    def __getattr__(self, attribute: str) -> Any:
        if self._logger is None:
            import logging

            self._logger = logging.getLogger(self._name)
        return getattr(self._logger, attribute)


def logger(name: str) -> Any:
    """The logger called ``name``, loaded on first use."""
    return _LazyLogger(name)
