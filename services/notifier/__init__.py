"""The notifier service: signed outgoing webhooks, delivered from the event stream."""

from .service import Notifier

__all__ = ["Notifier"]
