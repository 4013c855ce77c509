"""Calling a route's handler function directly (``handler.fn``), without an app: what a
handler reads of its request — its gateway, and the access guard's finding (no key)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from crewyard.gateway.access import STATE, Access
from crewyard.gateway.context import Gateway


def handler_request(g: Gateway, **attributes: Any) -> Any:
    """A request to ``g`` that passed the guard without a key; ``attributes`` (e.g. ``json``)."""
    return SimpleNamespace(
        app=SimpleNamespace(state=SimpleNamespace(gateway=g)), scope={STATE: Access(None)}, **attributes
    )
