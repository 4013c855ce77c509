"""Health of a crewyard service: one readiness check (:class:`Readiness`) for every service, and
the small HTTP listener (:class:`HealthListener`) that serves ``/healthz`` and ``/readyz`` for a
service started alone (the gateway serves the same two on its API port), and the start-up wait for
JetStream (:func:`wait_for_jetstream`) whose reason ``/readyz`` gives meanwhile."""

from ._listener import HealthError, HealthListener, Reply, Route, health_routes, json_reply, starting
from ._readiness import Readiness, Report
from ._startup import wait_for_jetstream

__all__ = [
    "HealthError",
    "HealthListener",
    "Readiness",
    "Reply",
    "Report",
    "Route",
    "health_routes",
    "json_reply",
    "starting",
    "wait_for_jetstream",
]
