"""The console in a real browser against ``crewyard up``: the live runs list, a run's timeline
filling in as it runs, artifact previews, cancel from the page, and a hostile crew whose output
and files run no script. One platform and one browser for the whole module."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, expect

from crewyard.testing.api import EXAMPLES, deploy, sse_events, wait_run
from crewyard.testing.platform import PlatformProcess

from .conftest import Watched, open_page, sign_in, start, until

HOSTILE = Path(__file__).parent / "hostile_crew"


@pytest.fixture(scope="module")
def deployed(platform: PlatformProcess) -> Iterator[httpx.Client]:
    with platform.client() as client:
        assert deploy(client, EXAMPLES / "hello", "hello")["status"] == "ready"
        assert deploy(client, HOSTILE, "hostile")["status"] == "ready"
        yield client


def test_the_runs_list_shows_new_runs_and_their_ends_without_a_reload(deployed: httpx.Client, page: Watched):
    p = page.page
    p.goto("/")
    expect(p.locator("#live-state")).to_have_attribute("data-state", "live")
    run_id = start(deployed, "hello", topic="lists", delay=0.2)
    row = p.locator(f"#run-{run_id}")
    expect(row).to_be_visible()
    expect(row.locator(".chip")).to_have_text("succeeded")
    assert p.evaluate("performance.getEntriesByType('navigation').length") == 1  # never reloaded
    page.shot("runs-list")
    p.keyboard.press("Tab")  # the keyboard starts at "skip to content"
    expect(p.locator(".skip")).to_be_focused()
    p.set_viewport_size({"width": 390, "height": 844})
    page.shot("runs-list-phone")


def test_a_run_timeline_fills_in_live_grouped_by_agent_task_and_tool(deployed: httpx.Client, page: Watched):
    run_id = start(deployed, "hello", topic="timelines", delay=3)
    p = page.page
    p.goto(f"/runs/{run_id}")
    assert p.locator("#run-header .chip").inner_text() in ("pending", "running")
    expect(p.locator("#timeline .group-agent .group-task .group-tool")).to_have_count(1)
    expect(p.locator("#run-header .chip")).to_have_text("succeeded", timeout=90_000)
    expect(p.locator("#timeline .ev-run-completed")).to_have_count(1)
    expect(p.locator("#live-state")).to_have_attribute("data-state", "done")
    expect(p.locator("#run-artifacts")).to_contain_text("report.md")
    expect(p.locator("#run-output")).to_contain_text('"words"')
    assert p.evaluate("performance.getEntriesByType('navigation').length") == 1
    page.shot("run")
    p.emulate_media(color_scheme="dark")
    page.shot("run-dark")
    p.emulate_media(color_scheme="light")

    p.get_by_role("link", name="report.md").first.click()
    expect(p.locator("article.markdown h1")).to_have_text("timelines")
    page.shot("artifact-markdown")


def test_a_running_run_is_canceled_from_its_page(deployed: httpx.Client, page: Watched):
    run_id = start(deployed, "hello", topic="patience", delay=30)
    p = page.page
    p.goto(f"/runs/{run_id}")
    expect(p.locator("#run-header .chip")).to_have_text("running")
    p.locator("#cancel").click()
    expect(p.locator("#run-header .chip")).to_have_text("canceled")
    assert wait_run(deployed, run_id)["status"] == "canceled"
    expect(p.locator("#timeline .ev-run-canceled")).to_have_count(1)
    page.shot("run-canceled")


def test_a_hostile_crew_runs_and_nothing_of_it_executes(deployed: httpx.Client, page: Watched, platform):
    run_id = start(deployed, "hostile")
    assert wait_run(deployed, run_id)["status"] == "succeeded"
    p = page.page
    p.goto(f"/runs/{run_id}")
    expect(p.locator("#live-state")).to_have_attribute("data-state", "done")
    # Every hostile string is on the page as text, none of it as an element.
    expect(p.locator("#run-output")).to_contain_text("<script>alert('xss')</script>")
    expect(p.locator("#timeline")).to_contain_text("<img src=x onerror")
    assert p.locator("main script, main iframe, main [onerror]").count() == 0
    assert p.locator("a[href^='javascript' i]").count() == 0
    page.shot("hostile-run")

    p.goto(f"/runs/{run_id}/artifacts/evil.md")
    article = p.locator("article.markdown")
    expect(article.locator("h1")).to_have_text("Report")
    assert article.locator("script, img, [onerror]").count() == 0
    assert p.locator("a[href^='javascript' i]").count() == 0
    expect(article.locator("a[href='https://example.com']")).to_have_attribute(
        "rel", "noopener noreferrer nofollow"
    )
    page.shot("artifact-hostile-markdown")

    p.goto(f"/runs/{run_id}/artifacts/chart.png")
    image = p.locator(".preview img")
    expect(image).to_be_visible()
    until(p, "document.querySelector('.preview img').naturalWidth === 24")
    page.shot("artifact-image")

    p.goto(f"/runs/{run_id}/artifacts/rows.csv")
    expect(p.locator("table.data td").first).to_have_text("<script>alert('xss')</script>")
    page.shot("artifact-csv")
    p.goto(f"/runs/{run_id}/artifacts/rows.json")
    expect(p.locator("table.data th").first).to_have_text("name")

    # Files opened directly are downloads in a sandbox: they cannot script this origin.
    for name in ("evil.html", "evil.svg"):
        r = deployed.get(f"/v1/runs/{run_id}/artifacts/{name}")
        assert r.headers["content-disposition"].startswith("attachment")
        assert "sandbox" in r.headers["content-security-policy"]
        assert r.headers["x-content-type-options"] == "nosniff"


#: Markup that slipped past escaping: an element added to the page, and whether it ran or loaded.
SLIPPED_IN = """([tag, attrs]) => new Promise((resolve) => {
  const element = document.createElement(tag);
  Object.assign(element, attrs);
  element.onload = () => resolve("loaded");
  element.onerror = () => resolve("refused");
  document.body.append(element);
  if (!attrs.src && !attrs.href) setTimeout(() => resolve("added"), 500);
})"""


def test_a_crew_file_or_inline_code_that_slipped_past_escaping_runs_nothing(
    deployed: httpx.Client, page: Watched
) -> None:
    """The page's policy trusts its own nonce, not every file of this origin: a crew's ``evil.js``
    (served from this origin) loaded by ``<script src>`` neither runs nor reads the CSRF token, its
    ``evil.css`` paints nothing, an inline script does nothing; the console's own script and
    stylesheet still load."""
    run_id = start(deployed, "hostile")
    assert wait_run(deployed, run_id)["status"] == "succeeded"
    p = page.page
    p.goto(f"/runs/{run_id}")
    expect(p.locator("#live-state")).to_have_attribute("data-state", "done")  # our own script ran
    assert p.evaluate("document.styleSheets.length") == 1  # our own stylesheet applies
    files = f"/v1/runs/{run_id}/artifacts"

    assert p.evaluate(SLIPPED_IN, ["script", {"src": f"{files}/evil.js"}]) == "refused"
    assert p.evaluate(SLIPPED_IN, ["link", {"rel": "stylesheet", "href": f"{files}/evil.css"}]) == "refused"
    p.evaluate(SLIPPED_IN, ["script", {"textContent": "window.__pwned = 'inline'"}])
    p.evaluate(SLIPPED_IN, ["style", {"textContent": "body { outline: 7px solid red !important; }"}])
    assert p.evaluate("window.__pwned === undefined")
    assert p.evaluate("getComputedStyle(document.body).outlineWidth") != "7px"
    # The browser reports each refusal as an error on the page: expected here, and nothing else.
    refusals = [e for e in page.errors if "Content Security Policy" in e or "MIME type" in e]
    assert refusals, page.errors
    page.errors[:] = [e for e in page.errors if e not in refusals]


def test_each_page_answer_has_a_new_nonce_on_its_own_script_and_stylesheet(deployed: httpx.Client) -> None:
    seen = set()
    for _ in range(2):
        r = deployed.get("/login")
        policy = dict(d.strip().split(" ", 1) for d in r.headers["content-security-policy"].split(";"))
        nonce = re.fullmatch(r"'nonce-([A-Za-z0-9_-]{24})'", policy["script-src"])
        assert nonce is not None, policy
        assert policy["style-src"] == policy["script-src"]  # no 'self', no 'unsafe-inline'
        assert r.text.count(f'nonce="{nonce[1]}"') == 2  # console.js and console.css
        seen.add(nonce[1])
    assert len(seen) == 2


def test_projects_deployments_and_env_pages(deployed: httpx.Client, page: Watched):
    r = deployed.put("/v1/projects/hello/env/SECRET_TOKEN", json={"value": "do-not-show-me"})
    assert r.status_code == 200, r.text
    p = page.page
    p.goto("/projects/hello")
    expect(p.locator("#env")).to_be_visible()
    expect(p.locator("main")).to_contain_text("SECRET_TOKEN")
    assert "do-not-show-me" not in p.content()
    expect(p.locator("table.versions .chip-current")).to_have_count(1)
    page.shot("project")
    p.locator("table.versions a").first.click()
    expect(p.locator("#build-log")).to_contain_text("ready")
    page.shot("deployment")


def test_one_feed_follows_every_project_the_key_sees(deployed: httpx.Client):
    start(deployed, "hello", topic="feeds", delay=0)
    lifecycle = sse_events(deployed, "/v1/events?only=runs&after=0", stop_after=6)
    assert len(lifecycle) == 6
    assert all(m["event"].startswith("run.") for m in lifecycle), [m["event"] for m in lifecycle]
    assert {
        m["data"]["project"] for m in sse_events(deployed, "/v1/events?project=hostile&after=0", stop_after=5)
    } == {"hostile"}
    assert deployed.get("/v1/events?only=everything").status_code == 400


def test_webhooks_triggers_and_schedules_of_a_project(deployed: httpx.Client, page: Watched):
    hook = deployed.post(
        "/v1/projects/hello/webhooks",
        json={"url": "https://hooks.example.invalid/<b>x</b>", "events": ["run.succeeded"]},
    )
    assert hook.status_code == 201, hook.text
    trigger = deployed.post("/v1/projects/hello/triggers", json={"name": "ci"})
    assert trigger.status_code == 201, trigger.text
    token = trigger.json()["token"]
    schedule = deployed.post(
        "/v1/projects/hello/schedules",
        json={"cron": "0 9 * * 1-5", "name": "mornings", "input": {"topic": "daily"}},
    )
    assert schedule.status_code == 201, schedule.text
    p = page.page
    p.goto("/projects/hello")
    p.get_by_role("link", name="Webhooks, triggers, schedules").click()
    expect(p.locator("#webhooks + section")).to_contain_text("https://hooks.example.invalid/<b>x</b>")
    expect(p.locator("#triggers + section")).to_contain_text("ci")
    assert token not in p.content()  # a trigger's token is shown once, by the API that makes it
    row = p.locator("#schedules + section tr", has_text="mornings")
    expect(row.locator(".chip")).to_have_text("active")
    row.get_by_role("button", name="Pause").click()
    expect(p.locator("#schedules + section tr", has_text="mornings").locator(".chip")).to_have_text("paused")
    page.shot("automation")
    p.locator("#webhooks + section a").first.click()
    expect(p.locator("h1")).to_contain_text("hooks.example.invalid")
    page.shot("webhook-deliveries")


def test_a_missing_run_is_a_page_that_says_so(page: Watched, deployed: httpx.Client):
    p = page.page
    response = p.goto("/runs/run_00000000000000000000000000")
    assert response is not None and response.status == 404
    expect(p.get_by_role("alert")).to_contain_text("not found")
    response = p.goto("/?status=<script>")
    assert response is not None and response.status == 400
    expect(p.get_by_role("alert")).to_contain_text("unknown status")
    page.errors.clear()  # the browser reports both answers' statuses, as it should


def _fragments(client: httpx.Client, url: str, headers: dict[str, str] | None = None) -> dict[str, str]:
    """The timeline items of a run's console stream: element id → the list it goes into."""
    placed: dict[str, str] = {}
    with client.stream("GET", url, headers=headers or {}) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        for line in resp.iter_lines():
            found = re.match(r'data: <li id="([^"]+)" class="[^"]*" data-into="([^"]+)"', line)
            if found:
                placed[found[1]] = found[2]
            if line.startswith("event: end"):
                break
    return placed


def test_a_resumed_run_stream_places_what_it_missed_exactly_where_an_unbroken_one_does(
    deployed: httpx.Client,
):
    run_id = start(deployed, "hello", topic="resume", delay=0)
    assert wait_run(deployed, run_id)["status"] == "succeeded"
    whole = _fragments(deployed, f"/live/runs/{run_id}")
    assert len(whole) > 10
    events = sse_events(deployed, f"/v1/runs/{run_id}/events")
    middle = next(m["id"] for m in events if m["event"] == "tool.called")
    rest = _fragments(deployed, f"/live/runs/{run_id}", headers={"Last-Event-ID": str(middle)})
    assert rest and set(rest) < set(whole)
    assert all(whole[item] == into for item, into in rest.items())
    assert any(into.startswith("g") for into in rest.values())  # inside the groups opened earlier


def test_sign_in_exchanges_the_key_for_a_session_cookie_and_sign_out_ends_it(
    browser: Browser, platform: PlatformProcess, deployed: httpx.Client
):
    watched = open_page(browser, platform.api)
    p = watched.page
    response = p.goto("/projects?x=1")
    assert response is not None and response.status == 401  # and the sign-in form, right here
    p.get_by_label("API key").fill("cyk_" + "x" * 43)
    p.get_by_role("button", name="Sign in").click()
    expect(p.get_by_role("alert")).to_contain_text("not valid")
    watched.errors.clear()  # the refused sign-in answered 401, as it should
    p.get_by_label("API key").fill(platform.admin_key)
    p.get_by_role("button", name="Sign in").click()
    expect(p).to_have_url(re.compile(r"/projects\?x=1$"))
    watched.shot("signed-in")
    cookies = {c["name"]: c for c in p.context.cookies()}
    session = cookies["crewyard_session"]
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    assert platform.admin_key not in session["value"]
    assert "crewyard_session" not in p.evaluate("document.cookie")  # no script can read it
    assert platform.admin_key not in p.url
    # A form without the session's CSRF token is refused, even from this very origin.
    run_id = start(deployed, "hello", topic="csrf", delay=30)
    refused = p.request.post(f"/runs/{run_id}/cancel", form={"_csrf": "forged"})
    assert refused.status == 403
    assert p.request.post(f"/v1/runs/{run_id}/cancel").status == 403  # nor the API, without the header
    assert deployed.get(f"/v1/runs/{run_id}").json()["cancel_requested"] is False
    deployed.post(f"/v1/runs/{run_id}/cancel")

    p.get_by_role("button", name="Sign out").click()
    expect(p).to_have_url(re.compile(r"/login$"))
    assert p.goto("/").status == 401  # type: ignore[union-attr]
    expect(p.get_by_label("API key")).to_be_visible()
    watched.errors.clear()
    p.context.close()
    assert watched.dialogs == []


def test_a_read_key_sees_no_cancel_button_and_the_api_refuses_it_anyway(
    browser: Browser, platform: PlatformProcess, deployed: httpx.Client
):
    made = deployed.post("/v1/keys", json={"role": "read", "project": "hello", "name": "viewer"})
    assert made.status_code == 201, made.text
    token = made.json()["token"]
    run_id = start(deployed, "hello", topic="read only", delay=30)
    hostile_run = start(deployed, "hostile")
    watched = open_page(browser, platform.api)
    sign_in(watched, token)
    p = watched.page
    p.goto(f"/runs/{run_id}")
    expect(p.locator("#run-header .chip")).to_have_text("running")
    assert p.locator("#cancel").count() == 0
    watched.shot("run-read-only")
    with platform.client(key=token) as reader:
        assert reader.post(f"/v1/runs/{run_id}/cancel").status_code == 403
        assert reader.get(f"/v1/runs/{hostile_run}").status_code == 404  # another project: not there
    csrf = p.locator("input[name=_csrf]").first.get_attribute("value")
    assert p.request.post(f"/runs/{run_id}/cancel", form={"_csrf": csrf or ""}).status == 403
    assert p.goto(f"/runs/{hostile_run}").status == 404
    p.goto("/")
    expect(p.locator("#runs-body tr").first).to_be_visible()
    assert p.locator("#runs-body").inner_text().count("hostile") == 0
    watched.errors.clear()
    p.context.close()
    deployed.post(f"/v1/runs/{run_id}/cancel")


def test_keys_are_made_shown_once_and_revoked_from_the_console(
    browser: Browser, platform: PlatformProcess, page: Watched
):
    p = page.page
    p.goto("/keys")
    p.get_by_label("Name").fill("ci <b>bot</b>")
    p.get_by_label("Role").select_option("run")
    p.get_by_label("Project").fill("hello")
    p.get_by_role("button", name="Create key").click()
    token = p.locator("#new-key").inner_text().strip()
    assert token.startswith("cyk_")
    page.shot("keys-created")
    p.reload()  # the answer's entry is the page's own address: a reload posts no second key
    assert p.url.endswith("/keys") and token not in p.content()  # shown that once only
    expect(p.locator("tr", has_text="ci <b>bot</b>")).to_have_count(1)
    row = p.locator("tr", has_text="ci <b>bot</b>")
    expect(row).to_contain_text("run")
    with platform.client(key=token) as bot:
        assert bot.get("/v1/runs?project=hello").status_code == 200
    other = open_page(browser, platform.api)
    sign_in(other, token)
    row.locator("summary", has_text="Revoke").click()
    row.get_by_role("button", name="Yes, revoke").click()
    expect(p.locator("tr", has_text="ci <b>bot</b>").locator(".chip")).to_have_text("revoked")
    page.shot("keys")
    with platform.client(key=token) as bot:
        assert bot.get("/v1/runs?project=hello").status_code == 401
    assert other.page.goto("/").status == 401  # type: ignore[union-attr]  # its session ended with its key
    other.page.get_by_label("API key").fill(token)
    other.page.get_by_role("button", name="Sign in").click()
    expect(other.page.get_by_role("alert")).to_contain_text("not valid")
    other.page.context.close()


def test_a_key_is_revoked_with_the_keys_made_from_it_when_asked(platform: PlatformProcess, page: Watched):
    with platform.client() as api:
        parent = api.post("/v1/keys", json={"name": "leaked", "role": "admin"}).json()
    with platform.client(key=parent["token"]) as leaked:
        child = leaked.post("/v1/keys", json={"name": "made-by-leaked", "role": "read"}).json()
    p = page.page
    p.goto("/keys")
    row = p.locator(f"#key-{parent['id']}")
    row.locator("summary", has_text="Revoke").click()
    row.get_by_label("Also the 1 key made from it").check()
    row.get_by_role("button", name="Yes, revoke").click()
    for key in (parent, child):
        expect(p.locator(f"#key-{key['id']}").locator(".chip")).to_have_text("revoked")
        with platform.client(key=key["token"]) as gone:
            assert gone.get("/v1/whoami").status_code == 401


def test_a_thread_shows_its_conversation_and_a_checkpoint_per_run(deployed: httpx.Client, page: Watched):
    made = deployed.post(
        "/v1/threads",
        json={
            "project": "hello",
            "values": {
                "messages": [
                    {"role": "user", "content": "<script>alert('xss')</script> hi"},
                    {"type": "ai", "content": "hello there"},
                ]
            },
        },
    )
    assert made.status_code == 201, made.text
    thread_id = made.json()["thread_id"]
    run = deployed.post(f"/v1/threads/{thread_id}/runs", json={"input": {"topic": "threads", "delay": 0}})
    assert run.status_code == 202, run.text
    assert wait_run(deployed, run.json()["run_id"])["status"] == "succeeded"
    p = page.page
    p.goto("/threads")
    p.get_by_role("link", name=thread_id).click()
    messages = p.locator(".messages li")
    expect(messages).to_have_count(2)
    expect(messages.first).to_contain_text("<script>alert('xss')</script> hi")
    expect(messages.nth(1)).to_contain_text("hello there")
    expect(p.locator("#history-title")).to_be_visible()
    page.shot("thread")
    # A large state is shown by its start, never decoded and indented whole.
    big = deployed.post("/v1/threads", json={"project": "hello", "values": {"notes": "x" * 100_000}})
    assert big.status_code == 201, big.text
    p.goto(f"/threads/{big.json()['thread_id']}")
    state = p.locator("#conversation pre.json")
    expect(state).to_contain_text("(the first 64.0 KB of 97.7 KB: the API shows it whole)")
