"""The bounded walk of a crew folder that detection reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from crewyard.core.sourcefiles import walk


def test_an_entry_that_cannot_be_looked_at_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without the permission to search a folder (or for /proc/1/cwd), Path.is_dir raises on
    # Python 3.11: `crewyard init` ended in "unexpected PermissionError" there.
    (tmp_path / "main.py").write_text("def main(i): return i\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "x.py").write_text("")
    (tmp_path / "other.py").write_text("")
    is_dir = Path.is_dir

    def guarded(path: Path) -> bool:
        if path.name in ("sub", "other.py"):
            raise PermissionError(13, "Permission denied", str(path))
        return is_dir(path)

    monkeypatch.setattr(Path, "is_dir", guarded)
    found = walk(tmp_path, frozenset(), lambda p: p.suffix == ".py", 100)
    assert [p.name for p in found] == ["main.py"]
