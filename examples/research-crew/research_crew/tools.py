"""The crew's custom tool: a CrewAI wrapper around the deterministic notes search."""

from __future__ import annotations

from crewai.tools import BaseTool
from pydantic import BaseModel, Field

from .notes import search_notes


class SearchNotesInput(BaseModel):
    query: str = Field(..., description="Words to look for in the research notes.")


class SearchNotesTool(BaseTool):
    name: str = "search_notes"
    description: str = "Search the team's research notes; returns the best matching notes with their titles."
    args_schema: type[BaseModel] = SearchNotesInput

    def _run(self, query: str) -> str:
        return search_notes(query)
