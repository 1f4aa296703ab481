"""A bare aiohttp server: the baseline that bantin's handlers are measured against.

    python -m bench.baseline_server --port 8099 [--body-bytes 2]
        [--body-file PATH --content-type TYPE] [--etag '"abc"']

GET / answers a fixed body (`--body-bytes` bytes of "x", or the bytes of `--body-file` with
`--content-type`); with `--etag`, it sends that ETag and answers 304 to a matching
If-None-Match. POST / reads the request body and answers 202 with a small JSON document (what
the ingest service does, minus the database and the broker); POST /json parses the body as JSON
(`await request.json()`) before answering the same. Listens on 127.0.0.1 only, prints "ready"
once listening, stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path

from aiohttp import web


def make_app(
    body_bytes: int,
    body: bytes | None = None,
    content_type: str = "text/plain",
    etag: str | None = None,
) -> web.Application:
    payload = b"x" * body_bytes if body is None else body
    type_, _, params = content_type.partition(";")
    charset = params.partition("charset=")[2].strip() or None

    async def get(request: web.Request) -> web.Response:
        if etag is not None:
            if request.headers.get("If-None-Match") == etag:
                return web.Response(status=304, headers={"ETag": etag})
            return web.Response(
                body=payload, content_type=type_.strip(), charset=charset, headers={"ETag": etag}
            )
        return web.Response(body=payload, content_type=type_.strip(), charset=charset)

    async def post(request: web.Request) -> web.Response:
        data = await request.read()
        return web.json_response({"id": 1, "status": "queued", "bytes": len(data)}, status=202)

    async def post_json(request: web.Request) -> web.Response:
        data = await request.json()
        return web.json_response(
            {"id": 1, "status": "processing", "title": data.get("title", "")}, status=202
        )

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_get("/", get)
    app.router.add_post("/", post)
    app.router.add_post("/json", post_json)
    return app


async def serve(
    port: int,
    body_bytes: int,
    body: bytes | None = None,
    content_type: str = "text/plain",
    etag: str | None = None,
) -> None:
    runner = web.AppRunner(make_app(body_bytes, body, content_type, etag), access_log=None)
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
    parser.add_argument("--body-file", type=Path, help="serve these bytes on GET /")
    parser.add_argument("--content-type", default="text/plain")
    parser.add_argument("--etag", help="send this ETag; answer 304 to a matching If-None-Match")
    args = parser.parse_args()
    body = args.body_file.read_bytes() if args.body_file else None
    asyncio.run(serve(args.port, args.body_bytes, body, args.content_type, args.etag))


if __name__ == "__main__":
    main()
