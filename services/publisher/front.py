"""The front door: cached pages and stored feeds answered before aiohttp's router and middleware.

A cached page's answer is prepared once per page and statistics snapshot (cache.Ready), and a
stored feed's once per version (feeds.Prepared): answering either is a dictionary lookup. What
was left of a request's cost was aiohttp's machinery around that lookup (route resolution, the
middleware chain, our middleware's bookkeeping), which made a cached page cost about half again
as much as a bare aiohttp handler serving the same bytes.

So the publisher's low-level server (aiohttp's `web.Server`) first offers each request to this
door. It answers a GET without a query string whose path the application has answered from
memory before, if the answer is still ready (same site version, same statistics snapshot, the
feed still fresh), with exactly what the application would answer: the same bytes and headers,
304 on a matching validator, the page view counted, the request id and the request statistics.
Anything else (a query string, another method, a page not ready, an error, anything new) goes
to the application unchanged. The door learns its paths from the application: `serve_page()`
and the feed handler call `remember()` when they answer from memory, so a path the application
has never answered 200 is never answered here, and a path whose page changed falls through to
the application until it has prepared the new answer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

from aiohttp import hdrs, web

from shared.logs import request_id
from shared.metrics import RequestStats, route_of
from shared.web import X_REQUEST_ID, incoming_request_id

log = logging.getLogger(__name__)

Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]
# Answers a request from memory, or None when the application must.
Quick = Callable[[web.Request], web.StreamResponse | None]

MAX_PATHS = 10_000  # paths remembered; beyond, forgotten at once (they are learnt again)
_EXPECT = hdrs.EXPECT


class FrontDoor:
    def __init__(self, stats: RequestStats) -> None:
        self.stats = stats
        # The path as the request line has it (raw: "/a%2Fb" is not "/a/b", which the router
        # tells apart too) -> (its quick answer, its route).
        self.paths: dict[str, tuple[Quick, Any]] = {}
        self.answered = 0  # requests answered here (for /metrics)
        self.inner: Handler | None = None

    def remember(self, request: web.Request, quick: Quick) -> None:
        """Called by a handler that has just answered `request` from memory: `quick` answers
        the same path next time, while it can. Only plain GETs: a query string may change the
        page (or not: the application decides, every time)."""
        if request.method != "GET" or request.query_string:
            return
        path = request.raw_path  # without a query string, as checked above
        if path != request.path:
            # Only plain paths, as the site links to them: percent-escapes, fragments and
            # absolute-form targets would let a client fill the table with one page's aliases.
            return
        if path not in self.paths:
            if len(self.paths) >= MAX_PATHS:
                self.paths.clear()
            self.paths[path] = (quick, route_of(request))

    def install(self, server: web.Server) -> None:
        """Put the door in front of the application's handler, before the server accepts its
        first connection (each connection takes the handler the server has then)."""
        self.inner = server.request_handler
        server.request_handler = self

    async def __call__(self, base: web.BaseRequest) -> web.StreamResponse:
        # The server's request factory is the application's: every request is a web.Request.
        request = cast(web.Request, base)
        if request.method == "GET":
            held = self.paths.get(request.raw_path)
            # (Expect: the application answers 100-continue.)
            if held is not None and not request.query_string and _EXPECT not in request.headers:
                started = time.perf_counter()
                rid = incoming_request_id(request)
                try:
                    response = held[0](request)
                except Exception:  # a bug here must not cost the reader the page
                    token = request_id.set(rid)
                    try:
                        log.exception(
                            "the front door failed on %s; the application answers", request.path
                        )
                    finally:
                        request_id.reset(token)
                    response = None
                if response is not None:
                    response.headers[X_REQUEST_ID] = rid
                    self.answered += 1
                    self.stats.observe(
                        held[1], "GET", response.status, time.perf_counter() - started
                    )
                    return response
        assert self.inner is not None, "install() first"
        return await self.inner(request)


front_key = web.AppKey("front_door", FrontDoor)


def remember(request: web.Request, quick: Quick) -> None:
    """For handlers: this path can be answered by `quick` next time (no-op without a door)."""
    door = request.app.get(front_key)
    if door is not None:
        door.remember(request, quick)
