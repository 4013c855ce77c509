"""``python -m crewyard.healthcheck [PATH]``: exit 0 when the service in this container is ready.

For the image's HEALTHCHECK and exec probes: asks ``PATH`` (default ``/readyz``) on loopback, at
``CREWYARD_HEALTH_PORT`` (a service started alone) or else ``CREWYARD_PORT`` (the API, default
8080). Standard library only, so it starts fast and needs nothing the image might lack.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request


def check(path: str = "/readyz", timeout: float = 4.0) -> bool:
    port = os.environ.get("CREWYARD_HEALTH_PORT") or os.environ.get("CREWYARD_PORT") or "8080"
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


if __name__ == "__main__":
    sys.exit(0 if check(sys.argv[1] if len(sys.argv) > 1 else "/readyz") else 1)
