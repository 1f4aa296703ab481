"""What both aiohttp services share: typed app keys, client lifecycles, their middleware,
health checks."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from ipaddress import IPv4Network, IPv6Address, IPv6Network, ip_address
from typing import Any, Protocol

import psycopg
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from multidict import istr
from psycopg_pool import AsyncConnectionPool
from redis import exceptions as redis_errors
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from shared import db, problems
from shared.logs import new_request_id, request_id
from shared.metrics import Handler, ServiceMetrics, route_of
from shared.photos.store import MediaStore, media_store
from shared.settings import Settings

HtmlErrors = Callable[[web.Request, int], Awaitable[web.StreamResponse] | None]
# Methods counted by name; any other (a client may send anything) is counted as "other".
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
X_REQUEST_ID = istr("X-Request-ID")  # an istr: no case folding per request
# What PostgreSQL or Redis away raises (refused, closed, not answering in time, recovering,
# loading its data): answered 503 with Retry-After, never 500.
DEPENDENCY_ERRORS = (
    psycopg.OperationalError,
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
)
BAD_HOST = "The Host header is not a valid host[:port] (ports go from 1 to 65535)."
RETRY_AFTER = 5  # seconds: about what a restarted PostgreSQL or Redis takes to answer again
UNAVAILABLE_PAGE = (
    "<!doctype html><html lang=vi><meta charset=utf-8><title>Tạm thời gián đoạn</title>"
    "<h1>Trang tạm thời chưa truy cập được</h1>"
    "<p>Hệ thống đang khởi động lại một thành phần. Xin vui lòng thử lại sau ít giây.</p>"
)

log = logging.getLogger(__name__)

settings_key = web.AppKey("settings", Settings)
media_key = web.AppKey("media", MediaStore)
pool_key = web.AppKey("pool", AsyncConnectionPool)  # holds a db.AsyncPool
redis_key = web.AppKey("redis", Redis)


class ServerHook(Protocol):
    """Something a service puts in front of its application's handler (the publisher's front
    door), installed on the low-level server once the app has started, before it listens."""

    def install(self, server: web.Server) -> None: ...


server_hook_key = web.AppKey("server_hook", ServerHook)


class AccessLogger(AbstractAccessLogger):
    """One line per request, written by aiohttp once the answer is sent: method, path, status,
    duration and the request id (the one the answer carries); the JSON formatter
    (BANTIN_LOG_FORMAT=json) writes each as a field."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        rid = response.headers.get(X_REQUEST_ID) or request.headers.get(X_REQUEST_ID, "-")
        ms = round(time * 1000, 1)
        self.logger.info(
            "%s %s %s %.1f ms",
            request.method,
            request.path,
            response.status,
            ms,
            extra={
                "request_id": rid,
                "http": {
                    "method": request.method,
                    "path": request.path,
                    "status": response.status,
                    "duration_ms": ms,
                },
            },
        )

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)


def run(app: web.Application, *, host: str, port: int, shutdown_timeout: float = 10.0) -> None:
    """Serve `app` until SIGTERM or SIGINT, as web.run_app does (the same keep-alive timeout,
    an access line per request through `AccessLogger`), with the app's server hook (if it has
    one) installed before the first connection; then shut down gracefully: stop listening, let
    requests in flight finish (up to `shutdown_timeout` s), run the app's cleanup (the
    publisher flushes its page views there).
    A signal during start-up lets the start-up finish, then shuts down the same way."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        runner = web.AppRunner(
            app,
            access_log=logging.getLogger("aiohttp.access"),
            access_log_class=AccessLogger,
            keepalive_timeout=75.0,
            shutdown_timeout=shutdown_timeout,
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

    bound = settings.dependency_timeout

    async def clients(app: web.Application) -> AsyncIterator[None]:
        pool = db.async_pool(database_url, max_size=pool_size, bound=bound)
        await pool.open(wait=True, timeout=30)
        # Every wait bounded; a broken connection (Redis restarted) is retried once, on a new
        # one, but a timeout is not: a paused Redis costs one bound, not several.
        redis = Redis.from_url(
            redis_url,
            socket_timeout=bound,
            socket_connect_timeout=bound,
            retry=Retry(NoBackoff(), 1, supported_errors=(redis_errors.ConnectionError,)),
        )
        app[pool_key] = pool
        app[redis_key] = redis
        try:
            yield
        finally:
            await redis.aclose()
            await pool.close()

    app.cleanup_ctx.append(clients)


def incoming_request_id(request: web.BaseRequest) -> str:
    """The request's id: the X-Request-ID it came with (a proxy's, cut to 64 characters), or
    a new one when it brought none or one that cannot be sent back (not printable ASCII:
    bytes that are not UTF-8 arrive as surrogates, which no header can carry)."""
    given = request.headers.get(X_REQUEST_ID, "")[:64]
    return given if given and given.isascii() and given.isprintable() else new_request_id()


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
                if not _port_ok(request.host):
                    raise problems.Problem(400, "Bad request", BAD_HOST, kind="bad-host")
                response = await handler(request)
            except web.HTTPException as exc:
                if exc.status < 400:
                    status = exc.status
                    raise
                try:
                    response = await problems.http_error(request, exc, html_errors)
                except Exception as err:  # the error page itself failed (database down)
                    response = failure(request, err, html_errors)
            except problems.Problem as problem:
                response = problem.response(request.path)
            except Exception as err:
                response = failure(request, err, html_errors)
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


def failure(
    request: web.Request, err: Exception, html_errors: HtmlErrors | None = None
) -> web.Response:
    """The answer to a request that raised: what the client or a dependency caused is said so
    (a 4xx, 503, or nothing at all), anything else is an internal error, logged with its
    traceback."""
    if isinstance(err, DEPENDENCY_ERRORS):
        return unavailable(request, err, html_errors)
    if isinstance(err, ConnectionError) and _client_gone(request):
        # The client went away mid-request (an upload cut short): its doing, not ours. Nobody
        # reads this answer; it is counted as 499, as nginx does.
        log.info("client went away during %s %s: %s", request.method, request.path, err)
        return web.Response(status=499, reason="Client Closed Request")
    if isinstance(err, ValueError) and not _host_ok(request):
        return problems.Problem(400, "Bad request", BAD_HOST, kind="bad-host").response(
            request.path
        )
    return problems.internal_error(request, err)


def unavailable(
    request: web.Request, err: Exception, html_errors: HtmlErrors | None = None
) -> web.Response:
    """503 with Retry-After: PostgreSQL or Redis is away (restarting, paused, unreachable).
    Readers' pages get a short page in Vietnamese, everything else problem details."""
    which = "PostgreSQL" if isinstance(err, psycopg.Error) else "Redis"
    now = time.monotonic()
    if now - _warned.get(which, -60.0) >= 10:  # a line per outage, not one per request
        _warned[which] = now
        log.warning("%s unavailable (%s on %s %s)", which, err, request.method, request.path)
    pool = request.app.get(pool_key)
    if isinstance(err, psycopg.Error) and isinstance(pool, db.BoundedPool):
        pool.trouble()
    headers = {"Retry-After": str(RETRY_AFTER), "Cache-Control": "no-store"}
    page = html_errors(request, 503) if html_errors is not None else None
    if page is not None:
        # The service's error page needs the very dependency that is away: only its choice of
        # HTML for this path is kept.
        if asyncio.iscoroutine(page):
            page.close()
        return web.Response(
            status=503, text=UNAVAILABLE_PAGE, content_type="text/html", headers=headers
        )
    return problems.Problem(
        503,
        "Service unavailable",
        f"{which} is not answering (restarting or overloaded); retry in {RETRY_AFTER} s.",
        kind="unavailable",
        headers=headers,
    ).response(request.path)


_warned: dict[str, float] = {}  # dependency -> when its absence was last logged


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


def _port_ok(host: str) -> bool:
    """Whether Host's port, if it has one, is a port: checked before the handler runs, since
    a handler that builds a link from it (after its commit) would fail too late."""
    _, colon, port = host.rpartition(":")
    if not colon or not port or "]" in port:  # no port, or an IPv6 address without one
        return True
    return port.isascii() and port.isdigit() and 0 < int(port) < 65536


def _host_ok(request: web.Request) -> bool:
    try:
        request.url  # noqa: B018 (building the URL is the check)
    except ValueError:
        return False
    return True


async def healthz(request: web.Request) -> web.Response:
    """Alive: the process answers. Cheap enough for a health check every second."""
    return web.json_response({"status": "ok"})


async def _database_answers(pool: AsyncConnectionPool) -> None:
    async with pool.connection(timeout=2) as conn:
        await conn.execute("SELECT 1")


async def readyz(request: web.Request) -> web.Response:
    """Ready: PostgreSQL and Redis both answer.

    After PostgreSQL restarted, each pooled connection it cut fails once (and leaves the pool):
    asked one by one, a health check would fail as many times in a row, and a container
    healthy again be marked unhealthy. So a failure first checks every idle connection of the
    pool (dropping the cut ones), then asks once more."""
    problems = {}
    pool = request.app[pool_key]
    try:
        try:
            await _database_answers(pool)
        except psycopg.OperationalError:
            await asyncio.wait_for(pool.check(), 2)
            await _database_answers(pool)
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
