"""Why an insert failed: the data, or ClickHouse (unreachable, out of space, overloaded).

The answer decides what happens to acknowledged data. A failure that is about ClickHouse
is retried, with backoff, for as long as it lasts: the segment waits in the write-ahead log
and nothing is set aside. Only a failure that says the data itself cannot be read may lead
to splitting a segment and setting the unreadable request aside
(:mod:`obsloop.pipelines.quarantine`), and even then only after a check proved that request
fails on its own.

ClickHouse names its errors (``Code: 444. DB::Exception: … (UNKNOWN_PROTOBUF_FORMAT)``);
the embedded engine's and the HTTP driver's exceptions carry that text, the former also as
``code`` / ``name`` attributes.
"""

from __future__ import annotations

import errno
import re
from enum import Enum

_NAME = re.compile(r"\(([A-Z][A-Z0-9_]{2,})\)")
_CODE = re.compile(r"Code: (\d+)\.")

DATA_ERRORS = frozenset({
    "UNKNOWN_PROTOBUF_FORMAT",  # a known field with the wrong wire type, a corrupt message
    "ATTEMPT_TO_READ_AFTER_EOF",  # a field longer than its message
    "CANNOT_READ_ALL_DATA",
    "INCORRECT_DATA",
    "TOO_LARGE_STRING_SIZE",
    "TOO_LARGE_ARRAY_SIZE",
    "VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE",
})
"""ClickHouse errors that say the input cannot be read (with ``CANNOT_PARSE_*``)."""

_NOT_DATA = frozenset({"CANNOT_PARSE_PROTOBUF_SCHEMA"})
"""Named like a data error, but about the schema: ClickHouse's side."""


class Cause(Enum):
    DATA = "data"
    """The input cannot be read: a check may split the segment and set the offender aside."""
    STORAGE = "storage"
    """Anything else (connection, disk space, memory, a missing table…): retried, never
    set aside; the data is fine and will be stored once ClickHouse is."""


def error_name(error: BaseException) -> str:
    """ClickHouse's name of the error (``UNKNOWN_PROTOBUF_FORMAT``), else the exception's
    type or errno name (``ConnectionRefusedError``, ``ENOSPC``)."""
    name = getattr(error, "name", None)
    if isinstance(name, str) and name.isupper():
        return name
    if isinstance(error, OSError) and error.errno is not None and error.errno in errno.errorcode:
        return errno.errorcode[error.errno]
    text = str(error)
    if _CODE.search(text):
        names = _NAME.findall(text)
        if names:
            return names[-1]
    return type(error).__name__


def classify(error: BaseException) -> Cause:
    """Whether ``error`` says the data is unreadable (:attr:`Cause.DATA`) or not; disk space,
    here or in ClickHouse, is never the data's fault.

    >>> classify(RuntimeError("Code: 444. DB::Exception: Protobuf messages are corrupted. (UNKNOWN_PROTOBUF_FORMAT)"))
    <Cause.DATA: 'data'>
    >>> classify(RuntimeError("Code: 243. DB::Exception: Cannot reserve 140 MiB. (NOT_ENOUGH_SPACE)"))
    <Cause.STORAGE: 'storage'>
    >>> classify(OSError(errno.ENOSPC, "No space left on device"))
    <Cause.STORAGE: 'storage'>
    """
    name = error_name(error)
    if name in _NOT_DATA:
        return Cause.STORAGE
    if name in DATA_ERRORS or name.startswith("CANNOT_PARSE_"):
        return Cause.DATA
    if name == "BAD_ARGUMENTS" and "invalid protobuf data" in str(error).lower():
        return Cause.DATA  # "OneOf has more than one value", as ClickHouse 25 words it
    return Cause.STORAGE
