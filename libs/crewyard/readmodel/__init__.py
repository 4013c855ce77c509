"""The read side: the SQLite read model's tables and the queries the API answers from.

The projector writes these tables (its handlers, one per event type); the gateway reads them
through :class:`ReadModel`. Both import this library; neither imports the other.
"""

from ._db import open_db, position
from ._queries import RUN_JSON, ReadModel, deployment_view, run_view
from ._tables import DDL as TABLE_DDL
from ._tables import ROWS_PAGE_BYTES, TABLE_HANDLERS, TableQueries, TableSize
from .schema import DDL, TABLES

__all__ = [
    "DDL",
    "ROWS_PAGE_BYTES",
    "RUN_JSON",
    "TABLES",
    "TABLE_DDL",
    "TABLE_HANDLERS",
    "ReadModel",
    "TableQueries",
    "TableSize",
    "deployment_view",
    "open_db",
    "position",
    "run_view",
]
