"""Ctrl-C while following a run with ``--json``: what the command says about it goes to stderr,
so that stdout stays NDJSON for ``| jq`` (it printed "Stopped following ..." among the events)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from crewyard.cli.render import make_console
from crewyard.cli.runs import follow_run


class _Interrupted:
    """A run's stream whose reader presses Ctrl-C after ``count`` events."""

    on_eof: Any = None

    def __init__(self, count: int) -> None:
        self.count = count

    def messages(self) -> Iterator[Any]:
        for seq in range(1, self.count + 1):
            data = json.dumps({"type": "log", "data": {"message": f"line {seq}", "level": "info"}})
            yield type("Msg", (), {"id": str(seq), "event": "log", "data": data})()
        raise KeyboardInterrupt


class _Client:
    def run_events(self, run_id: str, **_: Any) -> _Interrupted:
        return _Interrupted(2)


@pytest.mark.parametrize("as_json", [True, False])
def test_ctrl_c_while_following_keeps_json_output_json(
    capsys: pytest.CaptureFixture[str], as_json: bool
) -> None:
    code = follow_run(_Client(), make_console(), "run_1", as_json=as_json)  # type: ignore[arg-type]
    out, err = capsys.readouterr()
    assert code == 130
    if as_json:
        assert [json.loads(line)["seq"] for line in out.splitlines()] == [1, 2]
        assert "Stopped following run_1" in err and "crewyard runs events run_1" in err
    else:
        assert "Stopped following run_1" in out
