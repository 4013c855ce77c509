"""One assistant that answers ``{message}`` knowing what it answered before in the thread.

The thread convention: a thread run's input carries ``thread`` = ``{"id", "values"}`` (the state
this run starts from); the state the run leaves is set with ``crewyard_runtime.thread``. The
model comes from ``OPENAI_MODEL`` (``gpt-4o-mini``); CrewAI reads ``OPENAI_API_KEY`` and
``OPENAI_BASE_URL`` from the environment.
"""

from __future__ import annotations

import os
from typing import Any

from crewai import Agent, Crew, Task
from crewai.project import CrewBase, after_kickoff, agent, before_kickoff, crew, task

from crewyard_runtime import thread


@CrewBase
class ChatCrew:
    said: list[str]

    @before_kickoff
    def remember(self, inputs: dict[str, Any]) -> dict[str, Any]:
        state = (inputs.get("thread") or {}).get("values") or {}
        self.said = list(state.get("said", []))
        return {**inputs, "earlier": "; ".join(self.said[-5:]) or "nothing yet"}

    @agent
    def assistant(self) -> Agent:
        return Agent(
            role="Assistant",
            goal="Answer {message}",
            backstory="You answered before: {earlier}",
            llm=os.environ.get("OPENAI_MODEL", "gpt-4o-mini"),
        )

    @task
    def answer(self) -> Task:
        return Task(
            description="Answer {message}. You answered before: {earlier}",
            expected_output="A short answer",
            agent=self.assistant(),
        )

    @crew
    def crew(self) -> Crew:
        return Crew(agents=self.agents, tasks=self.tasks)

    @after_kickoff
    def keep(self, output: Any) -> Any:
        thread.update(said=[*self.said, str(output.raw)])
        return output
