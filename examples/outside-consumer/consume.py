"""An outside consumer of one crewyard project: replays the project's history from the first
event, then follows it live, acknowledging each event once handled.

Needs only nats-py. Get credentials from the platform (shown once; keep the file private)::

    crewyard consumers create --project research --name analytics --output analytics.json

and run::

    python consume.py analytics.json --nats nats://crewyard.example:4222

The credentials can pull from and acknowledge on this one durable consumer, nothing else: no
other project, no publishing, no secret-bearing events (environment values, API keys). Where it
stopped is kept by the server, so the next start goes on from there.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal

import nats
from nats.aio.client import RawCredentials
from nats.errors import TimeoutError as NatsTimeout


async def consume(bundle: dict, url: str, limit: int | None) -> None:
    nc = await nats.connect(
        url,
        user_credentials=RawCredentials(bundle["creds"]),
        # The credentials may receive replies on this inbox prefix only.
        inbox_prefix=bundle["inbox_prefix"],
        max_reconnect_attempts=-1,
    )
    js = nc.jetstream()
    # Bind to the durable the platform made: these credentials may not create consumers.
    psub = await js.pull_subscribe_bind(bundle["durable"], stream=bundle["stream"])
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGINT, stop.set)
    handled = 0
    try:
        while not stop.is_set() and (limit is None or handled < limit):
            try:
                msgs = await psub.fetch(100, timeout=5)
            except NatsTimeout:
                continue  # nothing new yet: keep following
            for msg in msgs:
                event = json.loads(msg.data)
                seq = msg.metadata.sequence.stream
                print(f"{seq:>8}  {event['type']:<24} {event['aggregate_id']}", flush=True)
                await msg.ack()
                handled += 1
    finally:
        await nc.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("credentials", help="the JSON file from `crewyard consumers create --output`")
    parser.add_argument("--nats", default="nats://127.0.0.1:4222", help="the platform's NATS URL")
    parser.add_argument("--limit", type=int, help="stop after this many events")
    args = parser.parse_args()
    with open(args.credentials) as fh:
        bundle = json.load(fh)
    asyncio.run(consume(bundle, args.nats, args.limit))


if __name__ == "__main__":
    main()
