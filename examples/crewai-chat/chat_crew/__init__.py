"""A CrewAI crew that keeps what was said in its thread."""
