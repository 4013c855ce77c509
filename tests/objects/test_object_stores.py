"""One contract for every object store: the NATS object store, and S3 (a real S3-protocol server,
moto's, on loopback)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from crewyard.eventstore import EventStore, close, connect
from crewyard.natsserver import EmbeddedNats
from crewyard.objects import NatsObjectStore, ObjectNotFound, ObjectStore, ObjectStoreError, S3ObjectStore
from crewyard.testing.platform import free_port


@pytest.fixture(params=["nats", "s3"])
async def objects(request: pytest.FixtureRequest, store: EventStore) -> AsyncIterator[ObjectStore]:
    if request.param == "nats":
        yield NatsObjectStore(store.nc, store.settings.object_bucket)
    else:
        endpoint = request.getfixturevalue("s3_endpoint")
        yield S3ObjectStore(
            endpoint,
            "test",
            "test-secret",
            f"crewyard-{uuid.uuid4().hex[:8]}",
            secure=False,
            region="us-east-1",
        )


async def test_bytes_and_files_round_trip(objects: ObjectStore, tmp_path: Path):
    assert not await objects.exists("sources/x")
    assert await objects.put_bytes("sources/x", b"hello") == 5
    assert await objects.exists("sources/x")
    assert await objects.get_bytes("sources/x") == b"hello"
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(range(256)) * 4096)  # 1 MiB, several chunks
    assert await objects.put_file("artifacts/big", big) == big.stat().st_size
    out = tmp_path / "out.bin"
    await objects.get_file("artifacts/big", out)
    assert out.read_bytes() == big.read_bytes()


async def test_missing_objects(objects: ObjectStore, tmp_path: Path):
    with pytest.raises(ObjectNotFound):
        await objects.get_bytes("nope")
    with pytest.raises(ObjectNotFound):
        await objects.get_file("nope", tmp_path / "nope")
    assert not (tmp_path / "nope").exists() and not (tmp_path / "nope.part").exists()


async def _streamed(objects: ObjectStore, name: str, start: int = 0, end: int | None = None) -> bytes:
    return b"".join([chunk async for chunk in objects.stream(name, start, end)])


async def test_objects_stream_in_chunks_and_by_range(objects: ObjectStore, tmp_path: Path):
    data = bytes(range(256)) * 4096  # 1 MiB: several chunks of either store
    big = tmp_path / "big.bin"
    big.write_bytes(data)
    await objects.put_file("artifacts/big", big)
    chunks = [chunk async for chunk in objects.stream("artifacts/big")]
    assert len(chunks) > 1 and max(map(len, chunks)) < len(data)  # never the whole object at once
    assert b"".join(chunks) == data
    for start, end in ((0, 1), (100, 300_000), (131_071, 131_073), (len(data) - 5, None), (10, 10)):
        assert await _streamed(objects, "artifacts/big", start, end) == data[start:end], (start, end)
    with pytest.raises(ObjectNotFound):
        await _streamed(objects, "nope")


async def test_reads_fail_within_seconds_while_nats_is_down(tmp_path: Path):
    """A broker that went away is an ObjectStoreError soon (the read timeout), not a long hang."""
    server = EmbeddedNats(tmp_path / "nats", port=free_port())
    server.start()
    nc = await connect(server.url, name="test", creds=server.creds("admin"))
    try:
        objects = NatsObjectStore(nc, "T_DOWN", read_timeout=1.0, chunk_wait_s=1.0)
        await objects.put_bytes("artifacts/a", b"data")
        server.stop()
        for read in (objects.get_bytes("artifacts/a"), objects.exists("artifacts/a")):
            with pytest.raises(ObjectStoreError):
                await asyncio.wait_for(read, 60)  # generous: only "it does not hang" is asserted
    finally:
        server.stop()
        await close(nc)  # also when the connection is gone: nothing of it retries on
