"""One analyst who writes a short digest of a topic to report.md (CrewAI's generated layout)."""

from __future__ import annotations

from crewai import Agent, Crew, Process, Task
from crewai.agents.agent_builder.base_agent import BaseAgent
from crewai.project import CrewBase, agent, crew, task


@CrewBase
class ResearchDigest:
    """The crew; its agents and tasks come from config/*.yaml inside the installed package."""

    agents_config = "config/agents.yaml"
    tasks_config = "config/tasks.yaml"

    agents: list[BaseAgent]
    tasks: list[Task]

    @agent
    def analyst(self) -> Agent:
        return Agent(config=self.agents_config["analyst"], verbose=True)

    @task
    def digest_task(self) -> Task:
        # output_file is relative: it lands in the run's artifacts folder.
        return Task(config=self.tasks_config["digest_task"])

    @crew
    def crew(self) -> Crew:
        return Crew(agents=self.agents, tasks=self.tasks, process=Process.sequential, verbose=True)
