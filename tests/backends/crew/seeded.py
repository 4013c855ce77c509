"""A crew whose import leaves a file in /tmp (as CrewAI's storage does): its runs find it there."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

SEED = Path("/tmp/.local/share/seeded/state.txt")
SEED.parent.mkdir(parents=True, exist_ok=True)
SEED.write_text("imported")


def run(inputs: dict[str, Any]) -> dict[str, Any]:
    found = SEED.read_text()
    with SEED.open("a") as f:
        f.write(f"+run-{inputs['n']}")
    return {"found": found, "after": SEED.read_text(), "tmp": sorted(os.listdir("/tmp"))}
