"""crewyard: a self-hosted platform for AI agent crews.

Packages: ``core`` (pure domain: events, state machines, subjects, crew config),
``eventstore`` (the JetStream adapter), ``objects`` (object stores), ``contract`` (the HTTP
API's types), the services ``builder``, ``runner``, ``projector``, ``gateway``, ``notifier``,
``scheduler``, and ``cli``.
"""

__version__ = "0.1.0"
