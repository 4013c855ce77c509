"""The scheduler service: cron schedules, exactly once per planned time."""

from .service import Scheduler, clock_from

__all__ = ["Scheduler", "clock_from"]
