"""Schedules and incoming triggers: ``schedules create|list|get|pause|resume|delete`` and
``triggers create|list|revoke``."""

from __future__ import annotations

from typing import Any

import click
from rich.text import Text

from crewyard.contract.schedules import Schedule, ScheduleList
from crewyard.contract.triggers import Trigger, TriggerList

from ._client import ApiClient, decoded, seg
from ._options import api_option, id_argument, json_option, parse_input, project_option, resolve_project
from .render import done, listing_table, local_time, make_console, print_json


def _show(s: Schedule) -> None:
    console = make_console()
    name = f" ({s.name})" if s.name else ""
    console.print(Text.assemble((s.id, "bold"), name, f"  {s.cron}  {s.timezone}  ", s.status))
    console.print(f"  overlap: {s.overlap}   catch-up: {s.catch_up}   fired: {s.fired}", highlight=False)
    if s.next_fire_times:
        console.print("  next: " + ", ".join(local_time(t) for t in s.next_fire_times), highlight=False)
    if s.last_run_id:
        console.print(f"  last run: {s.last_run_id}", highlight=False)


@click.group()
def schedules() -> None:
    """Run a deployment on a cron schedule, in any timezone — exactly once per planned time.

    \b
    Examples:
      crewyard schedules create "0 9 * * 1-5" --timezone Europe/Berlin -i '{"topic": "news"}' -p research
      crewyard schedules list -p research
    """


@schedules.command("create")
@click.argument("cron")
@click.option("--timezone", "-z", default="UTC", show_default=True, help="IANA name, e.g. Europe/Berlin.")
@click.option("--input", "-i", "input_text", default="{}", metavar="JSON|@FILE|-", help="The runs' input.")
@click.option("--deployment", metavar="DEP_ID", help="Pin a deployment (default: the project's current one).")
@click.option(
    "--overlap",
    type=click.Choice(["skip", "queue", "allow"]),
    default="skip",
    show_default=True,
    help="While the previous run still goes: skip this time, queue it, or allow both.",
)
@click.option(
    "--catch-up",
    type=click.Choice(["latest", "all"]),
    default="latest",
    show_default=True,
    help="After downtime: fire only the latest missed time, or all (up to --catch-up-limit).",
)
@click.option("--catch-up-limit", type=click.IntRange(1, 1000), default=10, show_default=True)
@click.option("--name", metavar="TEXT")
@project_option
@json_option
@api_option
def create(
    cron: str,
    timezone: str,
    input_text: str,
    deployment: str | None,
    overlap: str,
    catch_up: str,
    catch_up_limit: int,
    name: str | None,
    project: str | None,
    as_json: bool,
    api_url: str,
) -> None:
    """Create a schedule: CRON has five fields (minute hour day month weekday) or @daily etc."""
    target = resolve_project(project)
    body = {
        "cron": cron,
        "timezone": timezone,
        "input": parse_input(input_text),
        "deployment": deployment,
        "overlap": overlap,
        "catch_up": catch_up,
        "catch_up_limit": catch_up_limit,
        "name": name,
    }
    with ApiClient(api_url) as client:
        answer = client.call("POST", f"/v1/projects/{seg(target)}/schedules", json=body)
    schedule = decoded(answer, Schedule)
    if as_json:
        print_json(answer)
        return
    _show(schedule)


@schedules.command("list")
@project_option
@json_option
@api_option
def list_schedules(project: str | None, as_json: bool, api_url: str) -> None:
    """The project's schedules with their next planned times."""
    target = resolve_project(project)
    with ApiClient(api_url) as client:
        answer = client.call("GET", f"/v1/projects/{seg(target)}/schedules")
    rows = decoded(answer, ScheduleList).schedules
    if as_json:
        print_json(answer)
        return
    if not rows:
        make_console().print(f"No schedules in project {target}.")
        return
    table = listing_table(*("ID", "CRON", "TIMEZONE", "STATUS", "NEXT", "FIRED"))
    for s in rows:
        nxt = local_time(s.next_fire_times[0]) if s.next_fire_times else "-"
        table.add_row(s.id, s.cron, s.timezone, s.status, nxt, str(s.fired))
    make_console().print(table)


def _action(action: str, schedule_id: str, project: str | None, api_url: str, as_json: bool) -> None:
    target = resolve_project(project)
    with ApiClient(api_url) as client:
        path = f"/v1/projects/{seg(target)}/schedules/{seg(schedule_id)}"
        if action == "get":
            answer = client.call("GET", path)
        elif action == "delete":
            client.call("DELETE", path)
            done(as_json, {"id": schedule_id, "deleted": True}, "deleted ", (schedule_id, "bold"))
            return
        else:
            answer = client.call("POST", f"{path}/{action}")
    schedule = decoded(answer, Schedule)
    if as_json:
        print_json(answer)
        return
    _show(schedule)


@schedules.command("get")
@id_argument("schedule_id", "sch")
@project_option
@json_option
@api_option
def get_schedule(schedule_id: str, project: str | None, as_json: bool, api_url: str) -> None:
    """One schedule, with its next planned times."""
    _action("get", schedule_id, project, api_url, as_json)


@schedules.command("pause")
@id_argument("schedule_id", "sch")
@project_option
@json_option
@api_option
def pause(schedule_id: str, project: str | None, as_json: bool, api_url: str) -> None:
    """Stop firing; times planned while paused never fire."""
    _action("pause", schedule_id, project, api_url, as_json)


@schedules.command("resume")
@id_argument("schedule_id", "sch")
@project_option
@json_option
@api_option
def resume(schedule_id: str, project: str | None, as_json: bool, api_url: str) -> None:
    """Fire again from the next planned time after now."""
    _action("resume", schedule_id, project, api_url, as_json)


@schedules.command("delete")
@id_argument("schedule_id", "sch")
@project_option
@json_option
@api_option
def delete(schedule_id: str, project: str | None, as_json: bool, api_url: str) -> None:
    """Delete a schedule."""
    _action("delete", schedule_id, project, api_url, as_json)


@click.group()
def triggers() -> None:
    """Secret URLs that start a run: POST JSON to it, the body becomes the run's input.

    No API key is needed to use the URL; it starts runs of its project and nothing else.

    \b
    Examples:
      crewyard triggers create ci -p research
      curl -X POST $API/webhooks/runs/TOKEN -H 'content-type: application/json' -d '{"topic": "AI"}'
    """


@triggers.command("create")
@click.argument("name")
@click.option("--deployment", metavar="DEP_ID", help="Pin a deployment (default: the project's current one).")
@click.option("--template", metavar="JSON", help='Map body fields to input: {"branch": "$.ref"}.')
@click.option(
    "--signature-header",
    metavar="HEADER",
    help="Require sha256=<hex HMAC of the body> in HEADER (e.g. X-Hub-Signature-256); "
    "a secret is generated and printed once.",
)
@project_option
@json_option
@api_option
def create_trigger(
    name: str,
    deployment: str | None,
    template: str | None,
    signature_header: str | None,
    project: str | None,
    as_json: bool,
    api_url: str,
) -> None:
    """Create a trigger; prints its URL once."""
    target = resolve_project(project)
    body: dict[str, Any] = {"name": name, "deployment": deployment}
    if template:
        body["template"] = parse_input(template, "--template")
    if signature_header:
        body["signature"] = {"header": signature_header}
    with ApiClient(api_url) as client:
        answer = client.call("POST", f"/v1/projects/{seg(target)}/triggers", json=body)
        base = client.base_url
    t = decoded(answer, Trigger)
    if as_json:
        print_json(answer)
        return
    console = make_console()
    console.print(Text.assemble(("✓ ", "green"), (t.id, "bold"), f"  {t.name}"))
    console.print(Text.assemble("  URL: ", (f"{base}{t.url}", "bold yellow")))
    if t.signature_secret:
        console.print(Text.assemble(f"  {t.signature_header} secret: ", (t.signature_secret, "bold yellow")))
    console.print("  (shown this once: the URL alone starts runs, keep it secret)")


@triggers.command("list")
@project_option
@json_option
@api_option
def list_triggers(project: str | None, as_json: bool, api_url: str) -> None:
    """The project's triggers (their URLs are never shown again)."""
    target = resolve_project(project)
    with ApiClient(api_url) as client:
        answer = client.call("GET", f"/v1/projects/{seg(target)}/triggers")
    rows = decoded(answer, TriggerList).triggers
    if as_json:
        print_json(answer)
        return
    if not rows:
        make_console().print(f"No triggers in project {target}.")
        return
    table = listing_table(*("ID", "NAME", "DEPLOYMENT", "SIGNED", "STATE", "CREATED"))
    for t in rows:
        state = "revoked" if t.revoked else "active"
        signed = t.signature_header or "-"
        table.add_row(t.id, t.name, t.deployment_id or "current", signed, state, local_time(t.created_at))
    make_console().print(table)


@triggers.command("revoke")
@id_argument("trigger_id", "trg")
@project_option
@json_option
@api_option
def revoke(trigger_id: str, project: str | None, as_json: bool, api_url: str) -> None:
    """Revoke a trigger: its URL answers 404 from now on."""
    target = resolve_project(project)
    with ApiClient(api_url) as client:
        client.call("DELETE", f"/v1/projects/{seg(target)}/triggers/{seg(trigger_id)}")
    done(as_json, {"id": trigger_id, "revoked": True}, "revoked ", (trigger_id, "bold"))
