"""Outgoing webhooks: ``webhooks create|list|get|update|enable|disable|rotate-secret|delete``,
``webhooks deliveries`` and ``webhooks redeliver``. The signing secret is printed once, when it
is made."""

from __future__ import annotations

from typing import Any

import click
from rich import box
from rich.table import Table
from rich.text import Text

from crewyard.contract.webhooks import DeliveryList, Redelivery, Webhook, WebhookList

from ._client import ApiClient, CliError, decoded, seg
from ._options import api_option, id_argument, json_option, project_option, resolve_project
from .render import done, local_time, make_console, print_json, short, status_text

EVENTS_HELP = (
    "Event to send (repeat for several): run.started, run.succeeded, run.failed, run.canceled, "
    "deployment.ready, deployment.failed, or * for all (default)."
)


def _show(hook: Webhook, *, created: bool = False) -> None:
    console = make_console()
    state = "enabled" if hook.enabled else f"disabled ({hook.disabled_reason or 'no reason given'})"
    console.print(Text.assemble(("✓ " if created else "", "green"), (hook.id, "bold"), f"  {hook.url}"))
    console.print(f"  events: {', '.join(hook.events)}   {state}")
    if hook.deployment:
        console.print(f"  only deployment: {hook.deployment}")
    if hook.secret:
        console.print(Text.assemble("  signing secret: ", (hook.secret, "bold yellow")))
        console.print("  (shown this once: receivers verify the webhook-signature header with it)")


@click.group()
def webhooks() -> None:
    """Signed HTTP notifications when runs start and end, or deployments become ready.

    Deliveries follow Standard Webhooks (webhook-id, webhook-timestamp, webhook-signature) and
    also carry the X-Crewship-* headers; failed ones are retried with backoff for about a day.

    \b
    Examples:
      crewyard webhooks create https://example.com/hook -e run.succeeded -e run.failed -p research
      crewyard webhooks deliveries WEBHOOK_ID --status failed
    """


@webhooks.command("create")
@click.argument("url")
@click.option("--event", "-e", "events", multiple=True, help=EVENTS_HELP)
@click.option("--deployment", metavar="ID|NAME", help="Only events of this deployment (id or name).")
@click.option("--description", metavar="TEXT")
@project_option
@json_option
@api_option
def create(
    url: str,
    events: tuple[str, ...],
    deployment: str | None,
    description: str | None,
    project: str | None,
    as_json: bool,
    api_url: str,
) -> None:
    """Send the project's events to URL; prints the signing secret once."""
    target = resolve_project(project)
    body = {"url": url, "events": list(events) or ["*"], "deployment": deployment, "description": description}
    with ApiClient(api_url) as client:
        answer = client.call("POST", f"/v1/projects/{seg(target)}/webhooks", json=body)
    hook = decoded(answer, Webhook)
    if as_json:
        print_json(answer)
        return
    _show(hook, created=True)


@webhooks.command("list")
@project_option
@json_option
@api_option
def list_webhooks(project: str | None, as_json: bool, api_url: str) -> None:
    """The project's webhooks."""
    target = resolve_project(project)
    with ApiClient(api_url) as client:
        answer = client.call("GET", f"/v1/projects/{seg(target)}/webhooks")
    hooks = decoded(answer, WebhookList).webhooks
    if as_json:
        print_json(answer)
        return
    console = make_console()
    if not hooks:
        console.print(f"No webhooks in project {target}.")
        return
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for column in ("ID", "URL", "EVENTS", "STATE"):
        table.add_column(column, overflow="fold")
    for h in hooks:
        state = "enabled" if h.enabled else f"disabled: {short(h.disabled_reason or '', 60)}"
        table.add_row(h.id, h.url, ", ".join(h.events), state)
    console.print(table)


@webhooks.command("get")
@id_argument("webhook_id", "whk")
@project_option
@json_option
@api_option
def get_webhook(webhook_id: str, project: str | None, as_json: bool, api_url: str) -> None:
    """One webhook."""
    target = resolve_project(project)
    with ApiClient(api_url) as client:
        answer = client.call("GET", f"/v1/projects/{seg(target)}/webhooks/{seg(webhook_id)}")
    hook = decoded(answer, Webhook)
    if as_json:
        print_json(answer)
        return
    _show(hook)


def _update(webhook_id: str, project: str | None, api_url: str, body: dict[str, Any], as_json: bool) -> None:
    target = resolve_project(project)
    with ApiClient(api_url) as client:
        answer = client.call("PATCH", f"/v1/projects/{seg(target)}/webhooks/{seg(webhook_id)}", json=body)
    hook = decoded(answer, Webhook)
    if as_json:
        print_json(answer)
        return
    _show(hook)


@webhooks.command("update")
@id_argument("webhook_id", "whk")
@click.option("--url", metavar="URL")
@click.option("--event", "-e", "events", multiple=True, help=EVENTS_HELP)
@click.option("--description", metavar="TEXT")
@project_option
@json_option
@api_option
def update(
    webhook_id: str,
    url: str | None,
    events: tuple[str, ...],
    description: str | None,
    project: str | None,
    as_json: bool,
    api_url: str,
) -> None:
    """Change a webhook's URL, events or description."""
    body: dict[str, Any] = {"url": url, "events": list(events) or None, "description": description}
    body = {k: v for k, v in body.items() if v is not None}
    if not body:
        raise CliError("nothing to change: give --url, --event or --description")
    _update(webhook_id, project, api_url, body, as_json)


@webhooks.command("enable")
@id_argument("webhook_id", "whk")
@project_option
@json_option
@api_option
def enable(webhook_id: str, project: str | None, as_json: bool, api_url: str) -> None:
    """Enable a webhook again (also one disabled because it kept failing)."""
    _update(webhook_id, project, api_url, {"enabled": True}, as_json)


@webhooks.command("disable")
@id_argument("webhook_id", "whk")
@project_option
@json_option
@api_option
def disable(webhook_id: str, project: str | None, as_json: bool, api_url: str) -> None:
    """Stop sending to a webhook until it is enabled again."""
    _update(webhook_id, project, api_url, {"enabled": False}, as_json)


@webhooks.command("rotate-secret")
@id_argument("webhook_id", "whk")
@project_option
@json_option
@api_option
def rotate(webhook_id: str, project: str | None, as_json: bool, api_url: str) -> None:
    """A new signing secret (printed once); the old one also signs for 24 hours."""
    target = resolve_project(project)
    with ApiClient(api_url) as client:
        answer = client.call("POST", f"/v1/projects/{seg(target)}/webhooks/{seg(webhook_id)}/rotate-secret")
    hook = decoded(answer, Webhook)
    if as_json:
        print_json(answer)
        return
    _show(hook)


@webhooks.command("delete")
@id_argument("webhook_id", "whk")
@project_option
@json_option
@api_option
def delete(webhook_id: str, project: str | None, as_json: bool, api_url: str) -> None:
    """Delete a webhook; nothing more is sent to it."""
    target = resolve_project(project)
    with ApiClient(api_url) as client:
        client.call("DELETE", f"/v1/projects/{seg(target)}/webhooks/{seg(webhook_id)}")
    done(as_json, {"id": webhook_id, "deleted": True}, "deleted ", (webhook_id, "bold"))


@webhooks.command("deliveries")
@id_argument("webhook_id", "whk")
@click.option("--status", type=click.Choice(["pending", "succeeded", "failed"]))
@click.option("--limit", type=click.IntRange(1, 200), default=20, show_default=True)
@json_option
@api_option
def deliveries(webhook_id: str, status: str | None, limit: int, as_json: bool, api_url: str) -> None:
    """Deliveries of a webhook, newest first, with every attempt."""
    with ApiClient(api_url) as client:
        answer = client.call(
            "GET", f"/v1/webhooks/{seg(webhook_id)}/deliveries", params={"status": status, "limit": limit}
        )
    listed = decoded(answer, DeliveryList).deliveries
    if as_json:
        print_json(answer)
        return
    console = make_console()
    if not listed:
        console.print("No deliveries yet.")
        return
    for d in listed:
        about = d.run_id or d.deployment_id or ""
        console.print(Text.assemble((d.id, "bold"), f"  {d.event}  {about}  ", status_text(d.status)))
        for a in d.attempt_log:
            answer_text = f"HTTP {a.status_code}" if a.status_code is not None else (a.error or "no answer")
            line = f"    #{a.attempt} {local_time(a.at)}  {a.outcome:<9} {answer_text}  {a.latency_ms} ms"
            if a.next_attempt_at:
                line += f"  next {local_time(a.next_attempt_at)}"
            console.print(line, highlight=False)


@webhooks.command("redeliver")
@id_argument("webhook_id", "whk")
@id_argument("delivery_id")
@json_option
@api_option
def redeliver(webhook_id: str, delivery_id: str, as_json: bool, api_url: str) -> None:
    """Deliver again (same delivery id, a new series of attempts)."""
    with ApiClient(api_url) as client:
        answer = client.call(
            "POST", f"/v1/webhooks/{seg(webhook_id)}/deliveries/{seg(delivery_id)}/redeliver"
        )
    again = decoded(answer, Redelivery)
    if (again.webhook_id, again.delivery_id) != (webhook_id, delivery_id):
        raise CliError(f"the API answered with something unexpected: not a redelivery of {delivery_id}")
    if as_json:
        print_json(answer)
        return
    make_console().print(Text.assemble(("✓ ", "green"), "redelivering ", (delivery_id, "bold")))
