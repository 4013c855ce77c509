"""Wheels made on the spot for tests that install packages offline."""

from __future__ import annotations

import zipfile
from pathlib import Path


def six_wheel(path: Path, module: str) -> Path:
    """A wheel of "six" 1.16.0 at ``path`` whose module is ``module`` (not the real six)."""
    info = "six-1.16.0.dist-info"
    files = {
        "six.py": module,
        f"{info}/METADATA": "Metadata-Version: 2.1\nName: six\nVersion: 1.16.0\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: t\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = [f"{name},," for name in files] + [f"{info}/RECORD,,"]
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as whl:
        for name, text in {**files, f"{info}/RECORD": "\n".join(record) + "\n"}.items():
            whl.writestr(name, text)
    return path
