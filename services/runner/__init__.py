"""The runner service: executes queued runs on an execution backend, ends each in one terminal event."""

from .service import Runner

__all__ = ["Runner"]
