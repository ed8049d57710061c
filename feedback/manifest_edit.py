"""Changing scalar values in a manifest without touching anything else in the file.

ruamel.yaml's round-trip loader tells where every value is written; the edit replaces just
that token, in the quoting and unit style it was written in (``"4096MB"`` becomes
``"6144MB"``, ``'0%'`` stays single-quoted). Re-dumping the whole document would keep
comments and key order too, but it re-indents sequences and re-flows long lines unless its
settings happen to match the author's; a one-token edit keeps the diff a reviewer sees to the
lines that changed. The result is parsed again and compared with the intent, so a file that
the token edit would corrupt is refused instead of committed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from obsloop.core.manifests import SPEC_FIELDS, Manifest, load_documents, parse_manifests


class ManifestEditError(Exception):
    """The edit could not be made safely; the file is left as it was."""


_SUFFIX = re.compile(r"^(\d+(?:\.\d+)?)\s*([A-Za-z%]*)$")
_GIB_SUFFIXES = ("g", "gb", "gi", "gib")


def _token_end(line: str, start: int) -> int:
    quote = line[start]
    if quote == '"':
        index = start + 1
        while index < len(line) and line[index] != '"':
            index += 2 if line[index] == "\\" else 1
        return index + 1
    if quote == "'":
        index = start + 1
        while index < len(line):
            if line[index] == "'":
                if line[index + 1 : index + 2] == "'":
                    index += 2
                    continue
                return index + 1
            index += 1
        return index
    end = len(line)
    for stop in (",", "}", "]", " #", "\t#"):
        found = line.find(stop, start)
        if found != -1:
            end = min(end, found)
    return len(line[:end].rstrip())


def _render(old_token: str, value: Any) -> str:
    """``value`` written the way ``old_token`` was: same quotes, same unit suffix."""
    quote = old_token[0] if old_token[:1] in ("'", '"') else ""
    inner = old_token[1:-1] if quote else old_token
    match = _SUFFIX.match(inner.strip())
    suffix = match.group(2) if match else ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if suffix.lower() in _GIB_SUFFIXES:
        if value % 1024 == 0:
            text = f"{value // 1024}{suffix}"
        else:
            text = f"{value}{'Mi' if suffix.lower().startswith('gi') else 'MB'}"
    else:
        text = f"{value}{suffix}"
    return f"{quote}{text}{quote}"


def _plain(node: Any) -> Any:
    if isinstance(node, Mapping):
        return {key: _plain(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_plain(value) for value in node]
    return node


def apply_edits(text: str, manifest: Manifest, changes: Mapping[str, Any]) -> str:
    """Set each dotted spec path (``autoscaling.minReplicas``) in ``changes`` to its value.

    ``manifest`` must have been parsed from ``text``; every path must already be written in
    the file (the loop only changes values, it never adds keys).
    """
    lines = text.splitlines(keepends=True)
    edits = []
    for path, value in changes.items():
        if path not in manifest.positions:
            raise ManifestEditError(f"{manifest.path}: spec.{path} is not set in the file")
        line, column = manifest.positions[path]
        end = _token_end(lines[line], column)
        edits.append((line, column, end, _render(lines[line][column:end], value)))
    for line, column, end, token in sorted(edits, reverse=True):
        lines[line] = lines[line][:column] + token + lines[line][end:]
    result = "".join(lines)
    _verify(text, result, manifest, changes)
    return result


def _verify(before: str, after: str, manifest: Manifest, changes: Mapping[str, Any]) -> None:
    old_docs, _ = load_documents(manifest.path, before)
    new_docs, error = load_documents(manifest.path, after)
    if error is not None:
        raise ManifestEditError(f"edit would break the file: {error}")
    expected, actual = [_plain(doc) for doc in old_docs], [_plain(doc) for doc in new_docs]
    spec = expected[manifest.document]["spec"]
    for path in changes:
        section, key = path.split(".", 1)
        spec[section][key] = actual[manifest.document]["spec"][section][key]
    if actual != expected:
        raise ManifestEditError(f"{manifest.path}: edit changed more than {sorted(changes)}")
    reparsed, errors = parse_manifests(manifest.path, after)
    updated = next((m for m in reparsed if m.document == manifest.document), None)
    if updated is None:
        reasons = "; ".join(e.reason for e in errors)
        raise ManifestEditError(f"{manifest.path}: edit would make it invalid: {reasons}")
    for path, value in changes.items():
        if _manifest_value(updated, path) != value:
            raise ManifestEditError(f"{manifest.path}: spec.{path} did not read back as {value}")


def _manifest_value(manifest: Manifest, path: str) -> Any:
    if path not in SPEC_FIELDS:
        raise ManifestEditError(f"spec.{path} is not a value obsloop edits")
    return manifest.spec_value(path)
