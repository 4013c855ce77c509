"""Built environments, kept in the object store and unpacked once per host.

The builder publishes each environment as ``environments/<digest>.tar.gz`` with a manifest
``environments/<digest>.json`` (sha256, size, interpreter); ``deployment.ready`` records the
sha256. A runner uses exactly that: it unpacks the archive into ``<cache>/envs/<digest>`` once,
after checking the sha256, and every later run on that host reuses the folder. On the builder's
own host the folder is already there. Runs see it at :data:`~.sandbox.ENV_PATH` (bwrap binds it
there); the interpreter it was made from must exist at the same path on the runner's host.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from pathlib import Path

import msgspec

from crewyard.keyedlock import KeyedLock
from crewyard.objects import ObjectNotFound, ObjectStore

from . import archive
from ._base import BuildFailed


class Manifest(msgspec.Struct, kw_only=True):
    digest: str
    sha256: str
    size: int  # bytes unpacked
    python: str  # interpreter the environment was made from


class EnvironmentMissing(BuildFailed):
    """The deployment's environment is not in the object store (deleted, or built elsewhere)."""


def archive_object(digest: str) -> str:
    return f"environments/{digest}.tar.gz"


def manifest_object(digest: str) -> str:
    return f"environments/{digest}.json"


class EnvironmentStore:
    def __init__(self, cache_dir: Path, objects: ObjectStore | None) -> None:
        self.envs = cache_dir / "envs"
        self.objects = objects
        self._locks = KeyedLock()

    def path_for(self, digest: str) -> Path:
        return self.envs / digest

    def _local_manifest(self, digest: str) -> Manifest | None:
        try:
            return msgspec.json.decode((self.envs / f"{digest}.json").read_bytes(), type=Manifest)
        except (OSError, msgspec.DecodeError):
            return None

    async def published(self, digest: str) -> Manifest | None:
        """The manifest of an environment built before (here, or anywhere if stored)."""
        local = self._local_manifest(digest)
        if local is not None and (self.objects is None or await self.objects.exists(archive_object(digest))):
            return local
        if self.objects is None:
            return None
        try:
            raw = await self.objects.get_bytes(manifest_object(digest))
        except ObjectNotFound:
            return None
        try:
            return msgspec.json.decode(raw, type=Manifest)
        except msgspec.DecodeError:
            return None

    async def publish(self, digest: str, built: Path, python: str) -> Manifest:
        """Make ``built`` (a finished environment, its sandbox gone) this host's and the store's.

        ``built`` must be a real folder, never a link the build left in its place (BuildFailed):
        sanitizing, packing and installing it would otherwise work on the link's host target."""
        size = await asyncio.to_thread(archive.sanitize, built)
        self.envs.mkdir(parents=True, exist_ok=True)
        tarball = self.envs / f"{digest}.{uuid.uuid4().hex[:8]}.tar.gz"
        try:
            sha256 = await asyncio.to_thread(archive.pack, built, tarball)
            manifest = Manifest(digest=digest, sha256=sha256, size=size, python=python)
            if self.objects is not None:
                await self.objects.put_file(archive_object(digest), tarball)
                await self.objects.put_bytes(manifest_object(digest), msgspec.json.encode(manifest))
        finally:
            tarball.unlink(missing_ok=True)
        await asyncio.to_thread(self._install, digest, built, manifest)
        return manifest

    def _install(self, digest: str, folder: Path, manifest: Manifest) -> None:
        archive.real_folder(folder)
        target = self.path_for(digest)
        if target.exists():
            shutil.rmtree(target)  # a stale folder without (or with another) manifest
        folder.rename(target)
        tmp = self.envs / f"{digest}.json.{os.getpid()}"
        tmp.write_bytes(msgspec.json.encode(manifest))
        tmp.replace(self.envs / f"{digest}.json")

    async def fetch(self, digest: str, sha256: str) -> Path:
        """The environment's folder on this host, unpacked from the store when not here yet."""
        local = self._local_manifest(digest)
        if local is not None and local.sha256 == sha256 and self.path_for(digest).is_dir():
            return self.path_for(digest)
        async with self._locks.hold(digest):
            local = self._local_manifest(digest)
            if local is not None and local.sha256 == sha256 and self.path_for(digest).is_dir():
                return self.path_for(digest)
            if self.objects is None:
                raise EnvironmentMissing(f"environment {digest} is not on this host")
            self.envs.mkdir(parents=True, exist_ok=True)
            tag = uuid.uuid4().hex[:8]
            tarball = self.envs / f"{digest}.{tag}.tar.gz"
            unpacked = self.envs / f"{digest}.{tag}.tmp"
            try:
                try:
                    await self.objects.get_file(archive_object(digest), tarball)
                except ObjectNotFound:
                    raise EnvironmentMissing(
                        f"environment {digest} is not in the object store; deploy the crew again"
                    ) from None
                await asyncio.to_thread(archive.unpack, tarball, unpacked, sha256)
                size = sum(
                    f.stat().st_size for f in unpacked.rglob("*") if f.is_file() and not f.is_symlink()
                )
                manifest = Manifest(digest=digest, sha256=sha256, size=size, python="")
                await asyncio.to_thread(self._install, digest, unpacked, manifest)
            finally:
                tarball.unlink(missing_ok=True)
                await asyncio.to_thread(shutil.rmtree, unpacked, True)
        return self.path_for(digest)
