"""Run an app on a real socket: `start` (returns a handle, port 0 = pick one) and `serve` (until cancelled)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiohttp import web


@dataclass(frozen=True, slots=True, kw_only=True)
class RunningServer:
    runner: web.AppRunner
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def close(self) -> None:
        await self.runner.cleanup()


async def start(app: web.Application, host: str = "127.0.0.1", port: int = 8000) -> RunningServer:
    """Bind `app` on host:port and return at once; `port=0` binds a free port (see `.port`)."""
    # NOTE: handler_cancellation makes a client disconnect cancel its handler, which aborts the request in
    # the backend and frees its KV pages even while no token is being written.
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise OSError(exc.errno, f"cannot bind {host}:{port} ({exc.strerror}); pick another --port") from exc
    bound = runner.addresses[0][1] if runner.addresses else port
    return RunningServer(runner=runner, host=host, port=bound)


async def serve(app: web.Application, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve `app` until this coroutine is cancelled; then close connections cleanly."""
    server = await start(app, host, port)
    try:
        await asyncio.Event().wait()
    finally:
        await server.close()


__all__ = ["RunningServer", "serve", "start"]
