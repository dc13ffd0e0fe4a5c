"""DESIGN.md stays true: every product module, benchmark, study and doc page is named in its room's entry of the
"Rooms" map (as test_readme holds the README to the commands)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ROOMS = ("runtime", "melanomanet", "export", "benchmarks", "studies", "docs")


def room_entries() -> dict[str, str]:
    """Each room's text in the Rooms map: from the line that starts with `room/` to the next room's."""
    text = (ROOT / "DESIGN.md").read_text().split("## Rooms", 1)[1].split("```")[1]
    entries: dict[str, str] = {}
    current = None
    for line in text.splitlines():
        found = re.match(r"^([a-z]+)/\s", line)
        if found:
            current = found.group(1)
        if current is not None:
            entries[current] = entries.get(current, "") + line + "\n"
    return entries


ENTRIES = room_entries()
FILES = sorted(path.relative_to(ROOT) for room in ROOMS
               for path in (ROOT / room).rglob("*.py" if room != "docs" else "*.md")
               if path.name != "__init__.py" and "__pycache__" not in path.parts)


@pytest.mark.parametrize("path", FILES, ids=str)
def test_every_module_and_doc_is_named_in_its_room(path):
    entry = ENTRIES.get(path.parts[0], "")
    assert re.search(rf"(?<![\w.]){re.escape(path.name)}", entry), \
        f"{path} is not named in DESIGN.md's entry for {path.parts[0]}/: add it where it belongs"
