"""The app refuses to start with a route the access check (the app's ``before_request`` hook,
``crewyard.gateway.access.authorize``) would not cover, or not first: one that declares no rule,
one with a hook of its own (it would replace the check), one whose answers are cached, a
websocket or mounted ASGI route (the hook runs for HTTP routes only), and one that is not open
but has guards of its own (they run before the hook)."""

from __future__ import annotations

from typing import Any

import pytest
from litestar import Litestar, Request, WebSocket, asgi, get, websocket
from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler
from litestar.types import Receive, Scope, Send

from crewyard.gateway.access import authorize
from crewyard.gateway.app import check_access_rules


@get("/ruled", opt={"role": "read"})
async def ruled() -> str:
    return "ok"


@get("/unruled")
async def unruled() -> str:
    return "ok"


async def _own_hook(request: Request[Any, Any, Any]) -> None:
    return None


@get("/hooked", opt={"role": "read"}, before_request=_own_hook)
async def hooked() -> str:
    return "ok"


@get("/cached", opt={"role": "read"}, cache=60)
async def cached() -> str:
    return "ok"


@websocket("/socket", opt={"role": "admin"})
async def socket(socket: WebSocket[Any, Any, Any]) -> None:
    await socket.accept()
    await socket.send_text("secret")


@asgi("/mounted", is_mount=True, opt={"role": "admin"})
async def mounted(scope: Scope, receive: Receive, send: Send) -> None:
    return None


async def _own_guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    return None


@get("/guarded", opt={"role": "read"}, guards=[_own_guard])
async def guarded() -> str:
    return "ok"


@get("/open-guarded", opt={"open": True}, guards=[_own_guard])
async def open_guarded() -> str:
    return "ok"


def _app(handlers: list[Any], **kwargs: Any) -> Litestar:
    return Litestar(handlers, openapi_config=None, **kwargs)  # no document routes of its own


def test_routes_with_a_rule_and_the_apps_hook_pass() -> None:
    check_access_rules(_app([ruled, open_guarded], before_request=authorize))  # (a trigger's token)


def test_a_route_without_a_rule_is_refused() -> None:
    with pytest.raises(RuntimeError, match=r"routes without an access rule.*GET /unruled"):
        check_access_rules(_app([ruled, unruled], before_request=authorize))


def test_a_route_whose_own_hook_would_replace_the_check_is_refused() -> None:
    with pytest.raises(RuntimeError, match=r"access check would not run for.*: GET /hooked"):
        check_access_rules(_app([ruled, hooked], before_request=authorize))
    with pytest.raises(RuntimeError, match="access check would not run for"):
        check_access_rules(_app([ruled]))  # no check at all


def test_a_route_whose_answers_are_cached_is_refused() -> None:
    # Litestar answers from its cache before the before_request hook (the check) runs.
    with pytest.raises(RuntimeError, match=r"access check would not run for.*: GET /cached"):
        check_access_rules(_app([ruled, cached], before_request=authorize))


@pytest.mark.parametrize("route", [socket, mounted], ids=["websocket", "mounted ASGI app"])
def test_a_route_the_hook_does_not_run_for_is_refused(route: Any) -> None:
    with pytest.raises(RuntimeError, match="not HTTP routes"):
        check_access_rules(_app([ruled, route], before_request=authorize))


def test_guards_of_its_own_on_a_route_that_is_not_open_are_refused() -> None:
    with pytest.raises(RuntimeError, match=r"access check would not run for.*: GET /guarded"):
        check_access_rules(_app([ruled, guarded], before_request=authorize))
