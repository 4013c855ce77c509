"""A two-node LangGraph agent: ``research`` (a model with a notes-search tool) → ``write``."""
