"""The research crew: ``researcher`` searches the notes, ``writer`` turns findings into report.md.

The model comes from the agents' YAML (``gpt-4o-mini``); CrewAI reads ``OPENAI_API_KEY`` and
``OPENAI_BASE_URL`` from the environment, so any OpenAI-compatible server works.
Run locally: ``python -m research_crew.crew "AI agents"``.
"""

from __future__ import annotations

import sys

from crewai import Agent, Crew, Process, Task
from crewai.agents.agent_builder.base_agent import BaseAgent
from crewai.project import CrewBase, agent, crew, task

from .tools import SearchNotesTool


@CrewBase
class ResearchCrew:
    """Researcher → writer, sequential."""

    agents_config = "config/agents.yaml"
    tasks_config = "config/tasks.yaml"

    agents: list[BaseAgent]
    tasks: list[Task]

    @agent
    def researcher(self) -> Agent:
        return Agent(config=self.agents_config["researcher"], tools=[SearchNotesTool()], verbose=True)

    @agent
    def writer(self) -> Agent:
        return Agent(config=self.agents_config["writer"], verbose=True)

    @task
    def research_task(self) -> Task:
        return Task(config=self.tasks_config["research_task"])

    @task
    def report_task(self) -> Task:
        # output_file (report.md) is relative: it lands in the run's artifacts folder.
        return Task(config=self.tasks_config["report_task"])

    @crew
    def crew(self) -> Crew:
        return Crew(agents=self.agents, tasks=self.tasks, process=Process.sequential, verbose=True)


if __name__ == "__main__":
    topic = sys.argv[1] if len(sys.argv) > 1 else "AI agent crews"
    result = ResearchCrew().crew().kickoff(inputs={"topic": topic})
    print(result.raw)
