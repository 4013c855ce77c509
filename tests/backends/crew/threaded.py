"""A crew whose import leaves a thread running: a fork server must refuse to fork it."""

from __future__ import annotations

import threading
import time
from typing import Any

threading.Thread(target=time.sleep, args=(3600,), name="poller", daemon=True).start()


def run(inputs: dict[str, Any]) -> dict[str, Any]:
    return {"ok": True}
