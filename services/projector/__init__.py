"""The projector service: keeps the SQLite read model in step with the event stream."""

from .readmodel import ReadModel
from .service import Projector, open_db, position, rebuild

__all__ = ["Projector", "ReadModel", "open_db", "position", "rebuild"]
