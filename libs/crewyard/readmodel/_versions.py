"""Deployment names, versions and environment pointers as the read model has them.

The rules (which name a project means, what "ready" takes) are the core's
(:mod:`crewyard.core.versions`); this module only looks the rows up. The same rules read from
the stream are in :mod:`crewyard.versions`, for services without a read model.
"""

from __future__ import annotations

from typing import Any

from crewyard.core.ids import version_id
from crewyard.core.versions import (
    NoVersionInEnvironment,
    Resolved,
    UnknownVersion,
    Version,
    check_environment,
    choose_name,
    runnable,
)

from ._base import Reader


def _version(row: dict[str, Any]) -> Version:
    return Version(
        id=row["id"],
        project=row["project"],
        name=row["name"],
        number=row["version_number"],
        status=row["status"],
        environment=row["environment"],
    )


class VersionQueries(Reader):
    async def deployment_names(self, project: str) -> list[str]:
        rows = await self._all("SELECT DISTINCT name FROM deployments WHERE project = ?", (project,))
        return sorted(r["name"] for r in rows)

    async def resolve_version(
        self,
        *,
        project: str | None,
        deployment_id: str | None = None,
        name: str | None = None,
        environment: str | None = None,
    ) -> Resolved:
        """What a run of ``project`` (or of ``deployment_id``'s project) runs; see
        :func:`crewyard.core.versions.resolve` for the rules."""
        env = check_environment(environment)
        if deployment_id is not None:
            row = await self._one("SELECT * FROM deployments WHERE id = ?", (deployment_id,))
            if row is None or (project is not None and row["project"] != project):
                raise UnknownVersion(f"deployment {deployment_id} not found")
            if environment is None:
                return runnable(_version(row), env)
            project, name = row["project"], row["name"]
        assert project is not None
        chosen = choose_name(project, await self.deployment_names(project), name)
        row = await self._one(
            "SELECT d.* FROM environments e JOIN deployments d ON d.id = e.deployment_id"
            " WHERE e.project = ? AND e.name = ? AND e.environment = ?",
            (project, chosen, env),
        )
        if row is None:
            raise NoVersionInEnvironment(
                f"deployment {chosen} of project {project} has no version in {env} yet"
            )
        return runnable(_version(row), env)

    async def deployment_overview(self, project: str, name: str) -> dict[str, Any] | None:
        """One deployment name: its environments' versions and how many versions it has."""
        count = await self._one(
            "SELECT COUNT(*) AS n, MAX(version_number) AS latest FROM deployments"
            " WHERE project = ? AND name = ?",
            (project, name),
        )
        if count is None or not count["n"]:
            return None
        rows = await self._all(
            "SELECT e.environment, e.updated_at, d.id, d.version_number FROM environments e"
            " JOIN deployments d ON d.id = e.deployment_id WHERE e.project = ? AND e.name = ?"
            " ORDER BY e.environment",
            (project, name),
        )
        return {
            "project": project,
            "name": name,
            "versions": count["n"],
            "latest_version_number": count["latest"],
            "environments": {
                r["environment"]: {
                    "deployment_id": r["id"],
                    "version_id": version_id(r["id"]),
                    "version_number": r["version_number"],
                    "updated_at": r["updated_at"],
                }
                for r in rows
            },
        }
