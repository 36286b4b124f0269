#!/usr/bin/env python3
"""Idle-agent load tool: opens N agent WebSocket connections to a relay and keeps them idle.

Each connection speaks the agent side of proto/src/messages.rs just enough to be a
connected, idle agent: it sends the hello (`Authorization: Bearer <token>`), waits for
the welcome, then answers nothing but heartbeats (one every `heartbeat_secs` of the
welcome, so the relay never drops it). It never grants extra credits and never runs work.

Prints one JSON line `{"connected": N, "failed": F, "seconds": S}` once every
connection is welcomed (or failed), then holds them until SIGTERM/SIGINT or until
`--hold-secs` have passed (bounded), and exits.

    idle_agents.py --url ws://127.0.0.1:PORT/v1/agent/connect --token T -n 1000
"""

import argparse
import asyncio
import json
import signal
import sys
import time

from websockets.asyncio.client import connect


async def one_agent(url, token, index, welcomed, stop, args):
    """Runs one idle agent until `stop` is set; returns True once welcomed."""
    hello = {
        "type": "hello",
        "protocol": 1,
        "agent_id": f"bench-idle-{index}",
        "agent_version": "bench",
        "systems": [args.system],
        "credits": 8,
    }
    try:
        async with connect(
            url,
            additional_headers={"Authorization": f"Bearer {token}"},
            compression=None,  # the real agent negotiates no permessage-deflate
            ping_interval=None,  # liveness is the protocol's own heartbeat
            open_timeout=60,
            max_size=2**20,
        ) as ws:
            await ws.send(json.dumps(hello))
            first = json.loads(await asyncio.wait_for(ws.recv(), 60))
            if first.get("type") != "welcome":
                print(f"agent {index}: refused: {first}", file=sys.stderr)
                welcomed.put_nowait(False)
                return
            welcomed.put_nowait(True)
            period = float(first.get("heartbeat_secs", 15))
            beat = json.dumps({"type": "heartbeat"})

            async def heartbeats():
                while True:
                    await asyncio.sleep(period)
                    await ws.send(beat)

            async def drain():
                # Reads (and drops) whatever the relay sends: heartbeats, acks.
                async for _ in ws:
                    pass

            tasks = [asyncio.create_task(heartbeats()), asyncio.create_task(drain())]
            await stop.wait()
            for task in tasks:
                task.cancel()
    except Exception as error:  # noqa: BLE001 - a failed agent is counted, not fatal
        print(f"agent {index}: {type(error).__name__}: {error}", file=sys.stderr)
        welcomed.put_nowait(False)


async def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("-n", type=int, required=True)
    parser.add_argument("--system", default="SIM")
    parser.add_argument("--batch", type=int, default=200, help="connections opened at once")
    parser.add_argument("--hold-secs", type=float, default=600)
    args = parser.parse_args()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    welcomed = asyncio.Queue()
    started = time.monotonic()
    tasks, connected, failed = [], 0, 0
    # Open in batches so the relay's accept backlog is never the thing measured.
    for first in range(0, args.n, args.batch):
        for index in range(first, min(first + args.batch, args.n)):
            tasks.append(asyncio.create_task(one_agent(args.url, args.token, index, welcomed, stop, args)))
        while connected + failed < len(tasks):
            if await welcomed.get():
                connected += 1
            else:
                failed += 1
    print(json.dumps({"connected": connected, "failed": failed,
                      "seconds": round(time.monotonic() - started, 2)}), flush=True)
    try:
        await asyncio.wait_for(stop.wait(), args.hold_secs)
    except asyncio.TimeoutError:
        stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)


if __name__ == "__main__":
    asyncio.run(main())
