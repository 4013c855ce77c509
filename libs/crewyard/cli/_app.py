"""The ``crewyard`` command group: every command registered, and one red line for every failure
(see :mod:`crewyard.cli`)."""

from __future__ import annotations

import os
from typing import Any

import click

from crewyard.errors import CrewyardError

from . import artifacts as _artifacts  # noqa: F401  (registers `runs artifacts` and `runs download`)
from ._client import CliError
from .admin import demo, doctor, projector, service, up
from .consumers import consumers
from .deploy import deploy, deployments
from .env import env
from .events import events
from .init import init
from .keys import keys, login, logout
from .natsadmin import nats_group
from .projects import projects
from .runs import invoke, runs
from .schedules import schedules, triggers
from .threads import threads
from .versions import promote
from .webhooks import webhooks

__all__ = ["cli"]


class _Cli(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except BrokenPipeError:  # `crewyard … | head`: click's main exits quietly, as other CLIs do
            raise
        except CrewyardError as exc:  # expected, with a message written for people
            raise CliError(str(exc) or type(exc).__name__) from None
        except Exception as exc:
            if os.environ.get("CREWYARD_DEBUG"):
                raise
            raise CliError(
                f"unexpected {type(exc).__name__}: {exc} (set CREWYARD_DEBUG=1 to see the traceback)"
            ) from exc


@click.group(cls=_Cli, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="crewyard", prog_name="crewyard")
def cli() -> None:
    """crewyard — deploy AI agent crews to your own machines, run them, watch them work.

    \b
    Quick start:
      crewyard up                                  # start the platform (another terminal)
      crewyard init ./my-crew                      # write crewyard.toml
      crewyard deploy ./my-crew                    # upload and build
      crewyard invoke --project my-crew -i '{"topic": "AI"}' --stream

    API commands talk to --api (env CREWYARD_API, else the API of `crewyard login`, else
    http://127.0.0.1:8080) with an API key: CREWYARD_API_KEY, else the one `crewyard login`
    stored for that API, else (for a platform `crewyard up` runs here) <data dir>/admin.key.
    """


for _command in (
    init,
    up,
    deploy,
    promote,
    invoke,
    threads,
    runs,
    deployments,
    env,
    projects,
    events,
    webhooks,
    triggers,
    schedules,
    service,
    projector,
    nats_group,
    consumers,
    login,
    logout,
    keys,
    doctor,
    demo,
):
    cli.add_command(_command)
