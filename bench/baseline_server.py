"""A bare aiohttp server: the baseline that bantin's handlers are measured against.

    python -m bench.baseline_server --port 8099 [--body-bytes 2]

GET / answers a fixed body; POST / reads the request body and answers 202 with a small JSON
document (what the ingest service does, minus the database and the broker). Listens on
127.0.0.1 only, prints "ready" once listening, stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from aiohttp import web


def make_app(body_bytes: int) -> web.Application:
    body = b"x" * body_bytes

    async def get(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="text/plain")

    async def post(request: web.Request) -> web.Response:
        data = await request.read()
        return web.json_response({"id": 1, "status": "queued", "bytes": len(data)}, status=202)

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_get("/", get)
    app.router.add_post("/", post)
    return app


async def serve(port: int, body_bytes: int) -> None:
    runner = web.AppRunner(make_app(body_bytes), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("ready", flush=True)  # noqa: T201 (the parent waits for this line)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.baseline_server")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--body-bytes", type=int, default=2)
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.body_bytes))


if __name__ == "__main__":
    main()
