"""The console in a real browser against ``crewyard up``: sessions that end on every gateway,
and the forms that make and change things (webhooks, triggers, schedules, consumers), the live
thread page. One platform and one browser for the whole module."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, expect

from crewyard.testing.api import EXAMPLES, deploy, wait_run
from crewyard.testing.platform import PlatformProcess, free_port
from crewyard.testing.receiver import Receiver
from crewyard.testing.services import ServiceProcess

from .conftest import Watched, open_page, sign_in, start, until


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlatformProcess]:
    """``crewyard up`` whose webhooks may go to a receiver on this machine."""
    env = {"CREWYARD_WEBHOOK_TARGETS": "private"}
    p = PlatformProcess(tmp_path_factory.mktemp("console-manage"), env=env).start()
    yield p
    p.stop()


@pytest.fixture(scope="module")
def deployed(platform: PlatformProcess) -> Iterator[httpx.Client]:
    with platform.client() as client:
        assert deploy(client, EXAMPLES / "hello", "hello")["status"] == "ready"
        yield client


@pytest.fixture(scope="module")
def second_gateway(platform: PlatformProcess) -> Iterator[str]:
    """Another gateway of the same platform (its own process and port), as behind a balancer."""
    port = free_port()
    gateway = ServiceProcess("gateway", platform.data_dir, platform.nats_url, port=port).start()
    api = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            if httpx.get(api + "/readyz", timeout=5).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"the second gateway never became ready:\n{gateway.log_tail()}"
        assert gateway.proc is not None and gateway.proc.poll() is None, gateway.log_tail()
        time.sleep(0.1)
    yield api
    gateway.stop()


def _whoami(api: str, cookie: str) -> int:
    return httpx.get(api + "/v1/whoami", cookies={"crewyard_session": cookie}, timeout=30).status_code


def test_signing_out_ends_the_session_on_every_gateway_also_for_a_copied_cookie(
    browser: Browser, platform: PlatformProcess, second_gateway: str
):
    watched = open_page(browser, platform.api)
    sign_in(watched, platform.admin_key)
    p = watched.page
    copied = {c["name"]: c["value"] for c in p.context.cookies()}["crewyard_session"]
    assert _whoami(platform.api, copied) == 200
    assert _whoami(second_gateway, copied) == 200  # every gateway accepts the platform's sessions
    p.get_by_role("button", name="Sign out").click()
    p.wait_for_url(re.compile(r"/login$"))
    assert _whoami(platform.api, copied) == 401  # at once where it was signed out
    deadline = time.monotonic() + 30
    while _whoami(second_gateway, copied) != 401:
        assert time.monotonic() < deadline, "the other gateway still accepts a signed-out session"
        time.sleep(0.05)
    refused = httpx.get(second_gateway + "/", cookies={"crewyard_session": copied}, timeout=30)
    assert refused.status_code == 401 and 'name="key"' in refused.text  # the sign-in form
    sign_in(watched, platform.admin_key)  # a new session of the same key works
    assert p.goto("/").status == 200  # type: ignore[union-attr]
    p.context.close()
    assert watched.dialogs == []


def _delivered(api: httpx.Client, webhook_id: str) -> str:
    """A delivery of the webhook that succeeded, once there is one (its page is not live)."""
    deadline = time.monotonic() + 90
    while True:
        got = api.get(f"/v1/webhooks/{webhook_id}/deliveries").json()["deliveries"]
        done = [d["id"] for d in got if d["status"] == "succeeded"]
        if done:
            return str(done[0])
        assert time.monotonic() < deadline, got
        time.sleep(0.2)


def test_webhooks_triggers_and_schedules_are_made_from_their_forms_and_refusals_are_explained(
    deployed: httpx.Client, page: Watched
):
    p = page.page
    p.goto("/projects/hello/automation")
    with Receiver() as receiver:
        # A refused form answers with the API's reason beside it, and keeps what was typed.
        hooks = p.locator("#webhooks + section")
        hooks.get_by_text("New webhook…").click()
        hooks.get_by_label("URL", exact=True).fill("ftp://example.com/<b>hook</b>")
        p.get_by_role("button", name="Create webhook").click()
        expect(p.locator("#webhook-refused")).to_contain_text("Not created")
        expect(hooks.get_by_label("URL", exact=True)).to_have_value("ftp://example.com/<b>hook</b>")
        page.errors.clear()  # the browser reports the 400 answer, as it should
        page.shot("automation-refused")
        hooks.get_by_label("URL", exact=True).fill(receiver.url + "/hook")
        hooks.get_by_label("every event (*)").check()
        p.get_by_role("button", name="Create webhook").click()
        secret = p.locator(".created .new-secret").inner_text().strip()
        assert secret.startswith("whsec_")
        expect(p.locator("#webhooks + section")).to_contain_text(receiver.url + "/hook")
        page.shot("automation-webhook-created")

        triggers = p.locator("#triggers + section")
        triggers.get_by_text("New trigger URL…").click()
        triggers.get_by_label("Name").fill("deploy <hook>")
        p.get_by_role("button", name="Create trigger").click()
        url = p.locator(".created .new-secret").first.inner_text().strip()
        assert "/webhooks/runs/" in url
        fired = httpx.post(url, json={"topic": "from a trigger", "delay": 0}, timeout=30)
        assert fired.status_code == 202, fired.text
        expect(p.locator("#triggers + section")).to_contain_text("deploy <hook>")

        schedules = p.locator("#schedules + section")
        schedules.get_by_text("New schedule…").click()
        schedules.get_by_label("Cron").fill("not a cron")
        p.get_by_role("button", name="Create schedule").click()
        expect(p.locator("#schedule-refused")).to_contain_text("Not created")
        page.errors.clear()
        schedules.get_by_label("Cron").fill("0 9 * * 1-5")
        p.locator("textarea[name=input]").fill('{"topic": "mornings"}')
        p.get_by_role("button", name="Create schedule").click()
        made = p.locator("#schedules + section tr", has_text="0 9 * * 1-5")
        expect(made.locator(".chip")).to_have_text("active")

        # The trigger's run ends, the webhook delivers it; on the webhook's page: deliver again,
        # rotate the secret (the new one is shown once).
        assert wait_run(deployed, fired.json()["run_id"])["status"] == "succeeded"
        link = p.locator("#webhooks + section a", has_text=receiver.url)
        webhook_id = (link.get_attribute("href") or "").rsplit("/", 1)[-1]
        delivery_id = _delivered(deployed, webhook_id)
        link.click()
        delivered = p.locator(f"#delivery-{delivery_id}")
        expect(delivered.locator(".chip")).to_have_text("succeeded")
        before = len(receiver.snapshot())
        delivered.get_by_role("button", name="Deliver again").click()
        receiver.wait_for(lambda got: len(got) > before)
        p.locator("summary", has_text="Rotate the signing secret").click()
        p.get_by_role("button", name="Yes, rotate the secret").click()
        rotated = p.locator(".created .new-secret").inner_text().strip()
        assert rotated.startswith("whsec_") and rotated != secret
        page.shot("webhook-rotated")
        p.goto(f"/projects/hello/webhooks/{webhook_id}")
        expect(p.locator("h1")).to_contain_text(receiver.url)
        assert rotated not in p.content()  # shown that once


def test_a_read_key_sees_no_forms_and_its_posts_are_refused(
    browser: Browser, platform: PlatformProcess, deployed: httpx.Client
):
    made = deployed.post("/v1/keys", json={"role": "read", "project": "hello", "name": "viewer"})
    assert made.status_code == 201, made.text
    hook = deployed.post(
        "/v1/projects/hello/webhooks", json={"url": "http://127.0.0.1:9/h", "events": ["run.failed"]}
    )
    assert hook.status_code == 201, hook.text
    watched = open_page(browser, platform.api)
    sign_in(watched, made.json()["token"])
    p = watched.page
    p.goto("/projects/hello/automation")
    expect(p.locator("h1")).to_have_text("Webhooks, triggers and schedules")
    assert p.locator("main form[method=post]").count() == 0
    p.goto(f"/projects/hello/webhooks/{hook.json()['id']}")
    assert p.get_by_text("Rotate the signing secret").count() == 0
    csrf = p.locator("header input[name=_csrf]").first.get_attribute("value") or ""
    for path in (
        "/projects/hello/webhooks",
        "/projects/hello/triggers",
        "/projects/hello/schedules",
        f"/projects/hello/webhooks/{hook.json()['id']}/rotate-secret",
    ):
        assert p.request.post(path, form={"_csrf": csrf, "url": "https://example.com"}).status == 403, path
    watched.errors.clear()
    p.context.close()


def test_a_session_cookie_alone_cannot_make_a_stream_cancel_its_run(
    browser: Browser, platform: PlatformProcess, deployed: httpx.Client
):
    # A crew's report previewed in the console could name such a stream as an image or a link:
    # the viewer's browser would send the session's cookie, and the run end when the page does.
    watched = open_page(browser, platform.api)
    sign_in(watched, platform.admin_key)
    cookies = {
        "crewyard_session": {c["name"]: c["value"] for c in watched.page.context.cookies()}[
            "crewyard_session"
        ]
    }
    run_id = deployed.post("/v1/runs", json={"project": "hello", "input": {"delay": 0.5}}).json()["run_id"]
    with httpx.Client(base_url=platform.api, cookies=cookies, timeout=30) as browser_like:
        cancels = browser_like.get(f"/v1/runs/{run_id}/events", params={"cancel_on_disconnect": "true"})
        assert cancels.status_code == 403 and cancels.json()["error"]["code"] == "csrf", cancels.text
        with browser_like.stream("GET", f"/v1/runs/{run_id}/events") as watching:  # watching is a read
            assert watching.status_code == 200
    assert wait_run(deployed, run_id)["status"] == "succeeded"  # neither stream canceled it
    watched.page.context.close()


def test_a_thread_page_follows_its_runs_without_a_reload(deployed: httpx.Client, page: Watched):
    made = deployed.post(
        "/v1/threads",
        json={"project": "hello", "values": {"messages": [{"role": "user", "content": "<b>hi</b>"}]}},
    )
    assert made.status_code == 201, made.text
    thread_id = made.json()["thread_id"]
    p = page.page
    p.goto(f"/threads/{thread_id}")
    expect(p.locator("#live-state")).to_have_attribute("data-state", "live")
    expect(p.locator("#checkpoints")).to_contain_text("None yet")
    run = deployed.post(
        f"/v1/threads/{thread_id}/runs", json={"input": {"topic": "live threads", "delay": 0}}
    )
    assert run.status_code == 202, run.text
    expect(p.locator("#checkpoints a", has_text=run.json()["run_id"])).to_have_count(1)
    expect(p.locator("#thread-header .chip")).to_have_text("idle")
    expect(p.locator(".messages li").first).to_contain_text("<b>hi</b>")
    assert p.evaluate("performance.getEntriesByType('navigation').length") == 1  # never reloaded
    page.shot("thread-live")


_AT_END = "innerHeight + scrollY >= document.documentElement.scrollHeight - 48"


def test_a_run_timeline_follows_new_events_until_the_reader_scrolls_up(
    browser: Browser, platform: PlatformProcess, deployed: httpx.Client
):
    watched = open_page(browser, platform.api)
    sign_in(watched, platform.admin_key)
    p = watched.page
    p.set_viewport_size({"width": 900, "height": 360})  # a timeline taller than the window
    run_id = start(deployed, "hello", topic="scrolling", delay=4)
    p.goto(f"/runs/{run_id}")
    expect(p.locator("#timeline")).to_contain_text("note 1")
    assert p.evaluate("document.documentElement.scrollHeight > innerHeight")
    until(p, _AT_END)  # followed the new events down
    p.mouse.move(450, 200)
    p.mouse.wheel(0, -5000)  # the reader scrolls up …
    until(p, "scrollY === 0")
    expect(p.locator("#run-header .chip")).to_have_text("succeeded")
    expect(p.locator("#timeline .ev-run-completed")).to_have_count(1)
    assert p.evaluate("scrollY") == 0  # … and stays where they went
    watched.shot("run-scrolled-up", full_page=False)
    p.context.close()
    assert watched.dialogs == [] and watched.errors == []


def test_tables_and_their_rows_are_listed_and_shown_as_text(deployed: httpx.Client, page: Watched):
    made = deployed.post(
        "/v1/tables",
        json={
            "project": "hello",
            "name": "leads",
            "description": "people <i>we</i> met",
            "columns": [
                {"name": "name", "type": "text", "required": True},
                {"name": "score", "type": "number"},
                {"name": "extra", "type": "json"},
            ],
        },
    )
    assert made.status_code == 201, made.text
    rows = [{"name": "<script>alert('xss')</script>", "score": 3, "extra": {"a": [1]}}, {"name": "plain"}]
    assert deployed.post(f"/v1/tables/{made.json()['id']}/rows", json=rows).status_code == 201
    p = page.page
    p.goto("/tables")
    row = p.locator("tr", has_text="people <i>we</i> met")
    expect(row).to_contain_text("2")
    page.shot("tables")
    row.get_by_role("link", name="leads").click()
    expect(p.locator("h1")).to_have_text("leads")
    cells = p.locator("table.rows tbody tr")
    expect(cells).to_have_count(2)
    expect(p.locator("table.rows")).to_contain_text("<script>alert('xss')</script>")
    expect(p.locator("table.rows")).to_contain_text('{"a": [1]}')
    assert p.locator("main script").count() == 0
    page.shot("table-rows")


def test_consumer_credentials_are_issued_shown_once_and_revoked(deployed: httpx.Client, page: Watched):
    p = page.page
    p.goto("/consumers")
    p.get_by_label("Name").fill("Analytics <b>")
    p.get_by_role("button", name="Issue credentials").click()
    expect(p.locator("#refused")).to_contain_text("name")
    expect(p.get_by_label("Name")).to_have_value("Analytics <b>")
    page.errors.clear()  # the browser reports the 400 answer, as it should
    p.get_by_label("Name").fill("analytics")
    p.get_by_label("Project").select_option("hello")
    p.get_by_role("button", name="Issue credentials").click()
    creds = p.locator("#new-creds").inner_text()
    assert "BEGIN NATS USER JWT" in creds
    page.shot("consumer-issued")
    p.goto("/consumers")
    assert creds.strip() not in p.content()  # shown that once
    row = p.locator("tr", has_text="analytics")
    expect(row.locator(".chip")).to_have_text("active")
    row.locator("summary", has_text="Revoke").click()
    row.get_by_role("button", name="Yes, revoke").click()
    expect(p.locator("tr", has_text="analytics").locator(".chip")).to_have_text("revoked")
    page.shot("consumers")
