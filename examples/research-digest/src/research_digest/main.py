"""``research_digest`` (the project's script): run the crew locally."""

import sys

from research_digest.crew import ResearchDigest


def run() -> None:
    topic = sys.argv[1] if len(sys.argv) > 1 else "AI agent crews"
    print(ResearchDigest().crew().kickoff(inputs={"topic": topic}).raw)


if __name__ == "__main__":
    run()
