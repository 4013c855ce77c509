"""A chat graph with a human review step (LangGraph's ``interrupt()``)."""
