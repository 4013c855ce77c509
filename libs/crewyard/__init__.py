"""crewyard: a self-hosted platform for AI agent crews.

Packages: ``core`` (pure domain: events, state machines, subjects, crew config),
``eventstore`` (the JetStream adapter), ``objects`` (object stores), the four services
``builder``, ``runner``, ``projector``, ``gateway``, and ``cli``.
"""

__version__ = "0.1.0"
