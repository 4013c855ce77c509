"""Every route the README names (``GET /v1/runs/{id}``, ``GET\\|PATCH /v1/tables/{id}``…) is one
the API has, with that method: the README's API table is what users read first."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from crewyard.gateway import create_app
from crewyard.settings import Settings

README = Path(__file__).resolve().parents[2] / "README.md"
METHOD = r"(?:GET|POST|PUT|PATCH|DELETE)"
NAMED = re.compile(rf"`({METHOD}(?:\\\|{METHOD})*) (/[^`\s]*)`")


def _named_routes() -> list[tuple[str, str]]:
    """(method, path) of each full path the README names with its methods; relative ones
    (``…/webhooks/{id}``) are left out, a query (``?name=``) or an optional part (``[?x=]``) cut."""
    out = []
    for methods, path in NAMED.findall(README.read_text()):
        path = re.split(r"[?\[]", path, maxsplit=1)[0]
        if "…" in path:
            continue
        out += [(m, path) for m in methods.split("\\|")]
    return sorted(set(out))


def _shape(path: str) -> str:
    """A path with its parameters (``{run_id:str}``, ``{id}``, ``<token>``) made alike."""
    return re.sub(r"\{[^}]+\}|<[^>]+>", "{}", path.rstrip("/") or "/")


@pytest.fixture(scope="module")
def operations(tmp_path_factory: pytest.TempPathFactory) -> set[tuple[str, str]]:
    """Every (method, path) the app routes, those left out of the OpenAPI document too."""
    app = create_app(Settings(data_dir=Path(tmp_path_factory.mktemp("data"))))
    out: set[tuple[str, str]] = set()
    for route in app.routes:
        methods: Any = getattr(route, "methods", set())
        out |= {(m, _shape(route.path)) for m in methods}
    return out


def test_the_readme_names_routes():
    assert len(_named_routes()) > 40, _named_routes()


def test_every_route_the_readme_names_exists(operations: set[tuple[str, str]]):
    missing = [f"{m} {p}" for m, p in _named_routes() if (m, _shape(p)) not in operations]
    assert missing == []
