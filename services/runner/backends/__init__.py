"""Execution backends (provisional index; the isolation backends extend it)."""

from ._base import (
    BackendError,
    BackendUnavailable,
    ExecutionBackend,
    ExitStatus,
    Limits,
    RunHandle,
    RunSpec,
)
from .process import ProcessBackend

__all__ = [
    "BackendError",
    "BackendUnavailable",
    "ExecutionBackend",
    "ExitStatus",
    "Limits",
    "ProcessBackend",
    "RunHandle",
    "RunSpec",
]
