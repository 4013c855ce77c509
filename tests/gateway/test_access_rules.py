"""The app refuses to start with a route the access check would not cover: one that declares no
rule, or one with a ``before_request`` hook of its own (it would replace the app's, which is
the check: ``crewyard.gateway.access.authorize``)."""

from __future__ import annotations

from typing import Any

import pytest
from litestar import Litestar, Request, get

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


def _app(handlers: list[Any], **kwargs: Any) -> Litestar:
    return Litestar(handlers, openapi_config=None, **kwargs)  # no document routes of its own


def test_routes_with_a_rule_and_the_apps_hook_pass() -> None:
    check_access_rules(_app([ruled], before_request=authorize))


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
