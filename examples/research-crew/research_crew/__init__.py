"""A two-agent CrewAI research crew: a researcher with a notes-search tool, and a writer."""
