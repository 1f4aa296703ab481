"""RFC 9457 problem details: the one shape every bantin error answer takes.

Views raise `Problem`; the services' middleware (shared/metrics.py) turns it, aiohttp's own HTTP
errors and anything unexpected into `application/problem+json`, so no client ever sees a bare
500 page or a traceback.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
import redis.exceptions
from aiohttp import web

log = logging.getLogger(__name__)

CONTENT_TYPE = "application/problem+json"
TYPE_BASE = "https://bantin.dev/problems/"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Problem(Exception):
    """An answer that explains what is wrong, as RFC 9457 describes."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str = "",
        *,
        kind: str | None = None,
        errors: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail or title)
        self.status = status
        self.title = title
        self.detail = detail
        self.kind = kind or title.lower().replace(" ", "-")
        self.errors = errors
        self.headers = headers or {}
        self.extra = extra

    def body(self, instance: str | None = None) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "type": TYPE_BASE + self.kind,
            "title": self.title,
            "status": self.status,
        }
        if self.detail:
            doc["detail"] = self.detail
        if instance:
            doc["instance"] = instance
        if self.errors:
            doc["errors"] = self.errors
        doc.update(self.extra)
        return doc

    def response(self, instance: str | None = None) -> web.Response:
        return web.Response(
            status=self.status,
            # A detail may quote the client's own bad input, lone surrogates included: escape
            # what UTF-8 cannot carry rather than fail while explaining a failure.
            body=json.dumps(self.body(instance), ensure_ascii=False).encode(
                "utf-8", "backslashreplace"
            ),
            content_type=CONTENT_TYPE,
            headers=self.headers,
        )


def invalid(errors: list[dict[str, str]]) -> Problem:
    """A 422 listing every field that needs fixing, each with a pointer and a message."""
    fields = ", ".join(e["field"] for e in errors)
    return Problem(
        422,
        "Invalid article" if errors else "Invalid request",
        f"Fix these fields: {fields}",
        kind="validation",
        errors=errors,
    )


def field_error(field: str, message: str) -> dict[str, str]:
    return {"field": field, "pointer": "/" + field.replace(".", "/"), "message": message}


async def http_error(
    request: web.Request,
    exc: web.HTTPException,
    html_errors: Callable[[web.Request, int], Awaitable[web.StreamResponse] | None] | None = None,
) -> web.StreamResponse:
    """aiohttp's own HTTP errors (404, 405, 413...) as problem details, or, where `html_errors`
    gives one, as a page for readers."""
    if html_errors is not None:
        page = html_errors(request, exc.status)
        if page is not None:
            return await page
    return Problem(
        exc.status, exc.reason, _detail(exc), kind=f"http-{exc.status}", headers=_keep_headers(exc)
    ).response(request.path)


# PostgreSQL or Redis not answering (restarting, or their connections cut by a restart).
DEPENDENCY_AWAY = (
    psycopg.OperationalError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
)


def dependency_away(request: web.Request, err: BaseException) -> web.Response:
    """503 with Retry-After: the pool drops the broken connection, so a retry gets a new one."""
    log.warning("%s %s: %s: %s", request.method, request.path, type(err).__name__, err)
    return Problem(
        503,
        "Service unavailable",
        "The database or Redis did not answer (restarting?); send the same request again.",
        kind="unavailable",
        headers={"Retry-After": "5"},
    ).response(request.path)


def internal_error(request: web.Request, err: BaseException) -> web.Response:
    """Anything unexpected: logged with its traceback, answered without it."""
    log.error("unexpected error on %s %s", request.method, request.path, exc_info=err)
    return Problem(
        500, "Internal error", "The error was logged; please try again.", kind="internal"
    ).response(request.path)


def _detail(exc: web.HTTPException) -> str:
    text = exc.text or ""
    return "" if text.startswith(f"{exc.status}:") else text


def _keep_headers(exc: web.HTTPException) -> dict[str, str]:
    keep = {"Allow", "Retry-After", "Location"}
    return {k: v for k, v in exc.headers.items() if k in keep}
