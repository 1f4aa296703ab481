"""What both aiohttp services share: typed app keys, client lifecycles, their middleware,
health checks."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from email.utils import parsedate_to_datetime
from ipaddress import IPv4Network, IPv6Address, IPv6Network, ip_address
from typing import Any, Protocol

from aiohttp import hdrs, web
from multidict import istr
from psycopg_pool import AsyncConnectionPool
from redis.asyncio import Redis

from shared import db, problems
from shared.logs import new_request_id, request_id
from shared.media import MediaStore, media_store
from shared.metrics import Handler, ServiceMetrics, route_of
from shared.settings import Settings

HtmlErrors = Callable[[web.Request, int], Awaitable[web.StreamResponse] | None]
# Methods counted by name; any other (a client may send anything) is counted as "other".
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
X_REQUEST_ID = istr("X-Request-ID")  # an istr: no case folding per request

settings_key = web.AppKey("settings", Settings)
media_key = web.AppKey("media", MediaStore)
pool_key = web.AppKey("pool", AsyncConnectionPool)  # holds a db.AsyncPool
redis_key = web.AppKey("redis", Redis)


class ServerHook(Protocol):
    """Something a service puts in front of its application's handler (the publisher's front
    door), installed on the low-level server once the app has started, before it listens."""

    def install(self, server: web.Server) -> None: ...


server_hook_key = web.AppKey("server_hook", ServerHook)


def run(app: web.Application, *, host: str, port: int, shutdown_timeout: float = 10.0) -> None:
    """Serve `app` until SIGTERM or SIGINT, as web.run_app does (the same keep-alive timeout,
    no access log), with the app's server hook (if it has one) installed before the first
    connection; then shut down gracefully: stop listening, let requests in flight finish (up to
    `shutdown_timeout` s), run the app's cleanup (the publisher flushes its page views there).
    A signal during start-up lets the start-up finish, then shuts down the same way."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        runner = web.AppRunner(
            app, access_log=None, keepalive_timeout=75.0, shutdown_timeout=shutdown_timeout
        )
        try:
            await runner.setup()
            if stop.is_set():
                return
            hook = app.get(server_hook_key)
            if hook is not None and runner.server is not None:
                hook.install(runner.server)
            await web.TCPSite(runner, host, port).start()
            await stop.wait()
        finally:
            await runner.cleanup()

    asyncio.run(main())


def install_clients(app: web.Application, settings: Settings, *, pool_size: int = 10) -> None:
    """Open the database pool and the Redis client with the app, close them with it."""
    app[settings_key] = settings
    app[media_key] = media_store(settings)
    app[media_key].ensure()
    database_url, redis_url = settings.require_backends()

    async def clients(app: web.Application) -> AsyncIterator[None]:
        pool = db.async_pool(database_url, max_size=pool_size)
        await pool.open(wait=True, timeout=30)
        redis = Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)
        app[pool_key] = pool
        app[redis_key] = redis
        try:
            yield
        finally:
            await redis.aclose()
            await pool.close()

    app.cleanup_ctx.append(clients)


_rechecks: set[asyncio.Task[None]] = set()


def recheck_pool(app: web.Application) -> None:
    """After PostgreSQL did not answer (a restart cuts every pooled connection), check the idle
    connections once and drop the broken ones, so that the next requests get new connections
    instead of a 503 each, whenever they come."""
    pool = app.get(pool_key)
    if pool is None or _rechecks:
        return

    async def check() -> None:
        try:
            await pool.check()
        except Exception as err:  # still away: the next failure checks again
            problems.log.warning("database pool check failed: %s", err)

    task = asyncio.get_running_loop().create_task(check())
    _rechecks.add(task)
    task.add_done_callback(_rechecks.discard)


def incoming_request_id(request: web.BaseRequest) -> str:
    """The request's id: the X-Request-ID it came with (a proxy's, cut to 64 characters), or
    a new one."""
    return request.headers.get(X_REQUEST_ID, "")[:64] or new_request_id()


def service_middleware(metrics: ServiceMetrics, html_errors: HtmlErrors | None = None) -> Any:
    """The services' one middleware: a request id for the logs, every error answered as
    problem details (or, through `html_errors`, as a page for readers), and the request
    counted and timed. One layer, not three: each costs a call per request."""
    stats = metrics.http

    @web.middleware
    async def serve(request: web.Request, handler: Handler) -> web.StreamResponse:
        rid = incoming_request_id(request)
        token = request_id.set(rid)
        started = time.perf_counter()
        status = 499  # counted when no answer is made: the client went away (nginx's 499)
        try:
            try:
                response = await handler(request)
            except web.HTTPException as exc:
                if exc.status < 400:
                    status = exc.status
                    raise
                try:
                    response = await problems.http_error(request, exc, html_errors)
                except Exception as err:  # the error page itself failed (database down)
                    response = problems.internal_error(request, err)
            except problems.Problem as problem:
                response = problem.response(request.path)
            except problems.DEPENDENCY_AWAY as err:
                response = problems.dependency_away(request, err)
                recheck_pool(request.app)
            except Exception as err:
                response = problems.internal_error(request, err)
            response.headers[X_REQUEST_ID] = rid
            status = response.status
            return response
        finally:
            request_id.reset(token)
            method = request.method
            if method not in METHODS:
                method = "other"
            stats.observe(route_of(request), method, status, time.perf_counter() - started)

    return serve


async def healthz(request: web.Request) -> web.Response:
    """Alive: the process answers. Cheap enough for a health check every second."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready: PostgreSQL and Redis both answer."""
    problems = {}
    try:
        async with request.app[pool_key].connection(timeout=2) as conn:
            await conn.execute("SELECT 1")
    except Exception as err:
        problems["postgresql"] = type(err).__name__
    try:
        await request.app[redis_key].ping()
    except Exception as err:
        problems["redis"] = type(err).__name__
    status = 503 if problems else 200
    return web.json_response(
        {"status": "unavailable" if problems else "ok", **problems}, status=status
    )


def add_health_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)


def client_address(
    request: web.Request, proxies: tuple[IPv4Network | IPv6Network, ...] = ()
) -> str:
    """The reader's address. Behind trusted reverse proxies (BANTIN_TRUSTED_PROXIES), the
    nearest address in X-Forwarded-For that is not one of them: each proxy appends the address
    it received from, so only the hops that trusted proxies added can be believed; anything to
    the left of the first untrusted one may have been written by the client itself."""
    peer = request.remote or ""
    if not proxies or not _among(peer, proxies):
        return peer
    hops = [h.strip() for v in request.headers.getall("X-Forwarded-For", ()) for h in v.split(",")]
    for hop in reversed(hops):
        if not _among(hop, proxies):
            return hop if _is_address(hop) else peer
    return hops[0] if hops else peer


def _among(address: str, networks: tuple[IPv4Network | IPv6Network, ...]) -> bool:
    try:
        ip = ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # a dual-stack listener's view of an IPv4 peer: ::ffff:10.0.0.2
    return any(ip in n for n in networks)


def _is_address(text: str) -> bool:
    try:
        ip_address(text)
    except ValueError:
        return False
    return True


def not_modified(request: web.Request, etag: str, last_modified: str | None = None) -> bool:
    """RFC 9110 section 13.1: If-None-Match wins over If-Modified-Since when both are sent."""
    headers = request.headers
    inm = headers.get(hdrs.IF_NONE_MATCH)
    if inm is not None:
        if inm == etag:  # what a cache sends back, most of the time
            return True
        tags = {t.strip().removeprefix("W/") for t in inm.split(",")}
        return "*" in tags or etag.removeprefix("W/") in tags
    ims = headers.get(hdrs.IF_MODIFIED_SINCE)
    if ims and last_modified:
        try:
            return parsedate_to_datetime(last_modified) <= parsedate_to_datetime(ims)
        except (TypeError, ValueError):
            return False
    return False
