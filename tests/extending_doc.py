"""The code blocks of ``docs/extending.md``, by section, for the tests that run them."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "extending.md"


def python_blocks(section: str) -> list[str]:
    """The ```` ```python ```` blocks under the ``## <section>`` heading, in order."""
    text = DOC.read_text()
    match = re.search(rf"^## {re.escape(section)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"docs/extending.md has no section '## {section}'"
    return re.findall(r"^```python\n(.*?)^```", match.group(1), re.M | re.S)
