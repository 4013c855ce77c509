"""The projector service: keeps the SQLite read model (``crewyard.readmodel``) in step with the
event stream."""

from .service import Projector, rebuild

__all__ = ["Projector", "rebuild"]
