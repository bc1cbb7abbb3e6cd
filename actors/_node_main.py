"""Entry point of a child node: ``python -m actors._node_main --connect HOST:PORT --node-id ID``.

The shared token comes in the `ACTORS_NODE_TOKEN` environment variable. The process links back to its parent,
serves spawn requests, and exits when the link closes (so a dead parent never leaves orphans).
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import logging
import os
import signal
import sys

from ._loop import run
from ._node import TOKEN_ENV
from ._system import ActorSystem


async def serve(host: str, port: int, node_id: str, token: str) -> None:
    system = ActorSystem(node_id=node_id, token=token)
    node = await system.network.connect(host, port)
    assert node.link is not None
    stop: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def on_sigterm() -> None:
        if not stop.done():
            stop.set_result(None)

    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, on_sigterm)
    await asyncio.wait((node.link.finished, stop), return_when=asyncio.FIRST_COMPLETED)
    await system.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m actors._node_main")
    parser.add_argument("--connect", required=True, help="HOST:PORT of the parent node")
    parser.add_argument("--node-id", required=True)
    args = parser.parse_args()
    token = os.environ.pop(TOKEN_ENV, "")
    if not token:
        parser.error(f"set the shared node token in ${TOKEN_ENV}")
    host, _, port = args.connect.rpartition(":")
    logging.basicConfig(level=os.environ.get("ACTORS_LOG_LEVEL", "WARNING"))
    run(serve(host, int(port), args.node_id, token))
    _exit_now()


def _exit_now() -> None:
    """Exit after a graceful shutdown the way `multiprocessing` children do: atexit hooks, flushed logs and
    stdio, then `os._exit`. NOTE: this skips the interpreter's module teardown, which takes 1-2 s once torch
    is imported and would hold up the parent's `Node.stop` (and so every shutdown) for nothing."""
    atexit._run_exitfuncs()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
