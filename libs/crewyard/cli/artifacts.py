"""A run's files: ``runs artifacts`` (list) and ``runs download``.

Artifact names come from the crew, which is untrusted: a name may contain ``/`` (kept as
sub-folders) but never leads outside the chosen output folder.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path, PurePosixPath

import click
from rich.text import Text

from crewyard.client import Client

from ._client import CliError, connect
from ._options import api_option, id_argument, json_option
from .render import human_size, make_console, print_json
from .runs import runs


def safe_target(root: Path, name: str) -> Path:
    """Where artifact ``name`` goes under ``root``; CliError for a name that would escape it."""
    refusal = CliError(f"refusing to write artifact {name!r}: it would land outside {str(root)!r}")
    if not name or "\\" in name or "\0" in name:
        raise refusal
    pure = PurePosixPath(name)
    if pure.is_absolute() or ".." in pure.parts:
        raise refusal
    base = root.resolve()
    target = base.joinpath(*pure.parts).resolve()  # resolve() also sees through symlinks inside root
    if target == base or not target.is_relative_to(base):
        raise refusal
    return target


@runs.command("artifacts")
@id_argument("run_id", "run")
@json_option
@api_option
def list_artifacts(run_id: str, as_json: bool, api_url: str) -> None:
    """List the files a run produced.

    \b
    Example:
      crewyard runs artifacts run_01j9zq6m8k2v3w4x5y6z7a8b9c
    """
    with connect(api_url) as client:
        items = client.list_artifacts(run_id)
    if as_json:
        print_json({"artifacts": items})
        return
    console = make_console()
    if not items:
        console.print(f"No artifacts for {run_id}.")
        return
    console.print(f"Artifacts for {run_id}:")
    sizes = [human_size(a.size) for a in items]
    name_w = max(len(a.name) for a in items)
    size_w = max(len(s) for s in sizes)
    for item, size in zip(items, sizes, strict=True):
        line = f"  {item.name:<{name_w}}  {size:>{size_w}}  {item.content_type or ''}"
        console.print(Text(line.rstrip()))
    total = sum(a.size for a in items)
    noun = "artifact" if len(items) == 1 else "artifacts"
    console.print(f"{len(items)} {noun}, {human_size(total)} total")


@runs.command("download")
@id_argument("run_id", "run")
@click.argument("name", required=False)
@click.option("--all", "all_", is_flag=True, help="Download every artifact of the run.")
@click.option(
    "--output",
    "-o",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Folder to write into (created if missing; sub-folders kept).",
)
@json_option
@api_option
def download(run_id: str, name: str | None, all_: bool, output: Path, as_json: bool, api_url: str) -> None:
    """Download one artifact (NAME) or all of them (--all).

    Files are checked against the sha256 the API lists for them. With --json: one JSON line per
    file written ({"name", "path", "size", "sha256"}).

    \b
    Examples:
      crewyard runs download run_01j9zq6m8k2v3w4x5y6z7a8b9c report.md
      crewyard runs download run_01j9zq6m8k2v3w4x5y6z7a8b9c --all --output ./results
    """
    if bool(name) == all_:
        raise CliError("name one artifact, or use --all (see: crewyard runs artifacts RUN_ID)")
    console = make_console()
    with connect(api_url) as client:
        known = {a.name: a for a in client.list_artifacts(run_id)}
        wanted: list[tuple[str, str | None]]
        if all_:
            wanted = [(a.name, a.sha256) for a in known.values()]
            if not wanted:
                if not as_json:
                    console.print(f"No artifacts for {run_id}.")
                return
        else:
            assert name is not None
            listed = known.get(name)
            wanted = [(name, listed.sha256 if listed else None)]
        # Every name is checked before anything is written: no half-done download of a hostile list.
        targets = [(item, sha, safe_target(output, item)) for item, sha in wanted]
        for item, sha, target in targets:
            size = _fetch(client, run_id, item, target, sha)
            if as_json:
                line = {"name": item, "path": str(target), "size": size, "sha256": sha}
                click.echo(json.dumps(line, ensure_ascii=False))
                continue
            shown = os.path.relpath(target) if target.is_relative_to(Path.cwd()) else str(target)
            console.print(Text.assemble(("✓ ", "green"), item, (f" → {shown} ({human_size(size)})", "dim")))


def _fetch(client: Client, run_id: str, name: str, target: Path, sha256: str | None) -> int:
    """Stream one artifact into ``target`` via a temporary file; the size written."""
    partial = target.with_name(target.name + ".part")
    digest = hashlib.sha256()
    size = 0
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with partial.open("wb") as fh:
            for chunk in client.iter_artifact(run_id, name):
                fh.write(chunk)
                digest.update(chunk)
                size += len(chunk)
        expected = sha256.removeprefix("sha256:").removeprefix("sha256-") if sha256 else ""
        if expected and digest.hexdigest() != expected:
            raise CliError(f"artifact {name!r} arrived corrupted (sha256 mismatch); nothing was written")
        os.replace(partial, target)
    except OSError as exc:
        raise CliError(f"cannot write {str(target)!r}: {exc.strerror or exc}") from None
    finally:
        partial.unlink(missing_ok=True)
    return size
