"""The contract's types read today's answers as they are and declare the gateway's own bounds."""

from __future__ import annotations

import msgspec

from crewyard.contract import projects, runs
from crewyard.core import bounds


def test_declared_bounds_are_the_cores():
    assert runs.MAX_TIMEOUT_S == bounds.MAX_TIMEOUT_S
    assert projects.MAX_CONCURRENCY == bounds.MAX_CONCURRENCY
    assert projects.MAX_VALUE == bounds.MAX_ENV_VALUE


def test_a_run_create_body_of_the_reference_product_is_accepted_as_is():
    body = b'{"deployment_id": "dep_abc", "input": {"topic": "AI"}, "environment": "production"}'
    create = msgspec.json.decode(body, type=runs.RunCreate)
    assert (create.deployment_id, create.input, create.environment) == (
        "dep_abc",
        {"topic": "AI"},
        "production",
    )
    assert msgspec.json.decode(b'{"project": "p", "whatever": 1}', type=runs.RunCreate).project == "p"


def test_bounds_are_validated_by_the_types():
    for bad in (b'{"timeout_s": 0}', b'{"timeout_s": 1e12}', b'{"input": []}'):
        try:
            msgspec.json.decode(bad, type=runs.RunCreate)
        except msgspec.ValidationError:
            continue
        raise AssertionError(f"{bad!r} was accepted")
    assert (
        msgspec.json.decode(b'{"max_concurrent_runs": null}', type=projects.Limits).max_concurrent_runs
        is None
    )


def test_table_types_and_bounds_are_the_cores():
    from typing import get_args

    from crewyard.contract import tables
    from crewyard.core import tables as core_tables

    assert get_args(tables.ColumnType) == core_tables.COLUMN_TYPES
    assert tables.MAX_COLUMNS == core_tables.MAX_COLUMNS
    assert tables.MAX_ROWS_PER_INSERT == core_tables.MAX_ROWS_PER_INSERT
