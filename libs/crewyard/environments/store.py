"""Built environments, kept in the object store and unpacked once per host.

The builder publishes each environment as ``environments/<digest>/<sha256>.tar.gz`` with a
manifest ``environments/<digest>.json`` (sha256, size, interpreter); ``deployment.ready`` records
the sha256. A runner uses exactly that archive: it unpacks it into
``<cache>/envs/<digest>/<sha256>`` once, after checking the sha256, and every later run on that
host reuses the folder. On the builder's own host the folder is already there. Runs see it at
:data:`~.sandbox.ENV_PATH` (bwrap binds it there); the interpreter it was made from must exist at
the same path on the runner's host.

Two builders may build one environment at once (two deployments of the same dependencies); their
archives differ (file times), so each is kept under its own sha256 and never replaced: whichever
manifest is written last names an archive that is there, and a deployment's recorded sha256
always finds its own (unpinned requirements may resolve differently in each: a deployment runs
the build it recorded). A host's folder of a build is made by one rename of a complete folder and
never replaced: runs using it keep it (two processes unpacking the same build at once: the second
discards its copy). Archives published before were named ``environments/<digest>.tar.gz``; they
are still read.

An environment is bounded (:class:`~.sandbox.BuildLimits`: bytes at their apparent size, files
and folders): the builder refuses to publish a larger one, and a runner refuses to download one
whose manifest says it is larger, or to unpack one past the bounds.
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
from .sandbox import BuildLimits


class Manifest(msgspec.Struct, kw_only=True):
    digest: str
    sha256: str
    size: int  # bytes unpacked
    python: str  # interpreter the environment was made from


class EnvironmentMissing(BuildFailed):
    """The deployment's environment is not in the object store (deleted, or built elsewhere)."""


def archive_object(digest: str, sha256: str) -> str:
    return f"environments/{digest}/{sha256}.tar.gz"


def _former_archive_object(digest: str) -> str:
    return f"environments/{digest}.tar.gz"


def manifest_object(digest: str) -> str:
    return f"environments/{digest}.json"


class EnvironmentTooLarge(BuildFailed):
    """The environment is larger than an environment may be (built before builds were bounded)."""


class EnvironmentStore:
    def __init__(
        self, cache_dir: Path, objects: ObjectStore | None, limits: BuildLimits | None = None
    ) -> None:
        self.envs = cache_dir / "envs"
        self.objects = objects
        #: An environment larger than this is never made, nor unpacked (bytes, files and folders).
        self.limits = limits or BuildLimits()
        self._locks = KeyedLock()

    def path_for(self, digest: str, sha256: str) -> Path:
        """The folder of one build of ``digest`` on this host."""
        return self.builds_of(digest) / sha256

    def builds_of(self, digest: str) -> Path:
        """The folder of ``digest``'s builds on this host."""
        return self.envs / digest

    def _local_manifest(self, digest: str) -> Manifest | None:
        try:
            return msgspec.json.decode((self.envs / f"{digest}.json").read_bytes(), type=Manifest)
        except (OSError, msgspec.DecodeError):
            return None

    async def published(self, digest: str) -> Manifest | None:
        """The manifest of an environment built before (here, or anywhere if stored)."""
        local = self._local_manifest(digest)
        if local is not None and (self.objects is None or await self._stored(digest, local.sha256)):
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

    async def _stored(self, digest: str, sha256: str) -> bool:
        assert self.objects is not None
        return await self.objects.exists(archive_object(digest, sha256)) or await self.objects.exists(
            _former_archive_object(digest)
        )

    async def publish(self, digest: str, built: Path, python: str) -> Manifest:
        """Make ``built`` (a finished environment, its sandbox gone) this host's and the store's.

        ``built`` must be a real folder, never a link the build left in its place (BuildFailed):
        sanitizing, packing and installing it would otherwise work on the link's host target."""
        size = await asyncio.to_thread(archive.sanitize, built, self.limits.disk_bytes, self.limits.entries)
        self.envs.mkdir(parents=True, exist_ok=True)
        tarball = self.envs / f"{digest}.{uuid.uuid4().hex[:8]}.tar.gz"
        try:
            sha256 = await asyncio.to_thread(archive.pack, built, tarball)
            manifest = Manifest(digest=digest, sha256=sha256, size=size, python=python)
            if self.objects is not None:
                await self.objects.put_file(archive_object(digest, sha256), tarball)
                await self.objects.put_bytes(manifest_object(digest), msgspec.json.encode(manifest))
        finally:
            tarball.unlink(missing_ok=True)
        await asyncio.to_thread(self._install, built, manifest)
        return manifest

    async def _download(self, digest: str, sha256: str, tarball: Path) -> None:
        assert self.objects is not None
        for name in (archive_object(digest, sha256), _former_archive_object(digest)):
            try:
                await self.objects.get_file(name, tarball)
                return
            except ObjectNotFound:
                continue
        raise EnvironmentMissing(f"environment {digest} is not in the object store; deploy the crew again")

    def _install(self, folder: Path, manifest: Manifest) -> None:
        """``folder`` becomes the build's folder here, in one rename; when that build is here
        already (another process unpacked it meanwhile), the one here is kept and ``folder``
        left for its maker to remove: a folder runs may be using is never replaced."""
        archive.real_folder(folder)
        target = self.path_for(manifest.digest, manifest.sha256)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            folder.rename(target)
        except OSError:
            if not target.is_dir():
                raise
        tmp = self.envs / f"{manifest.digest}.json.{os.getpid()}"
        tmp.write_bytes(msgspec.json.encode(manifest))
        tmp.replace(self.envs / f"{manifest.digest}.json")

    async def fetch(self, digest: str, sha256: str) -> Path:
        """The folder of the build ``sha256`` of ``digest`` on this host, unpacked from the store
        when not here yet."""
        target = self.path_for(digest, sha256)
        if target.is_dir():
            return target
        async with self._locks.hold(digest):
            if target.is_dir():
                return target
            if self.objects is None:
                raise EnvironmentMissing(f"environment {digest} is not on this host")
            self.envs.mkdir(parents=True, exist_ok=True)
            tag = uuid.uuid4().hex[:8]
            tarball = self.envs / f"{digest}.{tag}.tar.gz"
            unpacked = self.envs / f"{digest}.{tag}.tmp"
            await self._refuse_too_large(digest)
            try:
                await self._download(digest, sha256, tarball)
                bounds = (self.limits.disk_bytes, self.limits.entries)
                size = await asyncio.to_thread(archive.unpack, tarball, unpacked, sha256, *bounds)
                manifest = Manifest(digest=digest, sha256=sha256, size=size, python="")
                await asyncio.to_thread(self._install, unpacked, manifest)
            finally:
                tarball.unlink(missing_ok=True)
                await asyncio.to_thread(shutil.rmtree, unpacked, True)
        return target

    async def _refuse_too_large(self, digest: str) -> None:
        """EnvironmentTooLarge when the environment's manifest says it unpacks to more than an
        environment may take, before it is downloaded (unpacking stops at the limit anyway)."""
        assert self.objects is not None
        try:
            manifest = msgspec.json.decode(
                await self.objects.get_bytes(manifest_object(digest)), type=Manifest
            )
        except (ObjectNotFound, msgspec.DecodeError):
            return
        if manifest.size > self.limits.disk_bytes:
            raise EnvironmentTooLarge(
                f"environment {digest} unpacks to {manifest.size >> 20} MiB, more than the"
                f" {self.limits.disk_bytes >> 20} MiB an environment may take; deploy the crew again"
            )
