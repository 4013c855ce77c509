"""A page of threads (or of a thread's checkpoints) may end early, once its states take some
16 MiB: the CLI says where the next page starts instead of leaving a reader who steps by
``--limit`` to skip what the short page left out."""

from __future__ import annotations

import json

from crewyard.testing.fakeapi import FakeApi, Reply

THREAD = {"thread_id": "thr_" + "0" * 26, "name": "default", "status": "idle", "updated_at": ""}


def test_a_short_page_of_threads_says_where_the_next_starts(api: FakeApi, run_cli) -> None:
    api.route("GET", "/v1/threads", Reply(200, {"threads": [THREAD], "next_offset": 21}))
    shown = run_cli("threads", "list", "-p", "demo", "--offset", "20", "--api", api.url)
    assert shown.exit_code == 0, shown.stderr
    assert THREAD["thread_id"] in shown.stdout and "More: --offset 21" in shown.stdout
    as_json = run_cli("threads", "list", "-p", "demo", "--offset", "20", "--json", "--api", api.url)
    assert json.loads(as_json.stdout)["next_offset"] == 21
    assert api.calls("GET", "/v1/threads")[0].query["offset"] == ["20"]


def test_the_last_page_says_nothing_more(api: FakeApi, run_cli) -> None:
    api.route("GET", "/v1/threads", Reply(200, {"threads": [THREAD], "next_offset": None}))
    shown = run_cli("threads", "list", "-p", "demo", "--api", api.url)
    assert shown.exit_code == 0, shown.stderr
    assert THREAD["thread_id"] in shown.stdout and "More:" not in shown.stdout


def test_a_short_page_of_checkpoints_says_where_the_next_starts(api: FakeApi, run_cli) -> None:
    checkpoint = {
        "checkpoint_id": "ckp_" + "0" * 26,
        "run_id": None,
        "values": {"n": 1},
        "interrupts": [],
        "parent_checkpoint_id": None,
        "framework": None,
        "created_at": "",
    }
    page = {"history": [checkpoint], "total": 9, "limit": 5, "offset": 2}
    api.route("GET", f"/v1/threads/{THREAD['thread_id']}/history", Reply(200, page))
    shown = run_cli("threads", "history", THREAD["thread_id"], "--offset", "2", "--api", api.url)
    assert shown.exit_code == 0, shown.stderr
    assert "More: --offset 3" in shown.stdout
