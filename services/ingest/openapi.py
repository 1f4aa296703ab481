"""The OpenAPI 3.1 description of the submitters' API, served at /api/v1/openapi.json.

The schemas come from the declarations in shared/shapes.py (the very ones that validate
requests and write answers); this module only says which operation takes and gives which, with
an example for each request, so that schemathesis's examples phase runs. The test suite runs
schemathesis against the served document.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from services.ingest.submit import BATCH_LIMIT
from shared import shapes
from shared.problems import CONTENT_TYPE as PROBLEM
from shared.problems import dumps

EXAMPLE_ARTICLE = {
    "title": "Hội nghị tổng kết công tác năm 2021",
    "category": "tin-hoat-dong",
    "summary": "Chiều ngày 11/1/2022, Viện kiểm sát nhân dân tỉnh tổ chức hội nghị.",
    "body": "<p>Năm 2021, các nhiệm vụ công tác đã hoàn thành.</p>",
    "author": "Tố Uyên",
    "unit": "Văn phòng VKSND tỉnh",
    "published_at": "2022-01-12T08:16:46+07:00",
}
EXAMPLES: dict[str, Any] = {
    "ArticleIn": EXAMPLE_ARTICLE,
    "ArticlePatch": {"title": "Tiêu đề mới"},
    "CategoryIn": {"slug": "tin-hoat-dong", "name": "Tin hoạt động"},
    "CategoryPatch": {"retired": True, "redirect_to": "tin-hoat-dong"},
    "SiteIn": {
        "link_blocks": [
            {
                "title": "Liên kết website",
                "links": [{"title": "VKSND tối cao", "url": "https://vksndtc.gov.vn/"}],
            }
        ]
    },
    "BatchIn": {"articles": [EXAMPLE_ARTICLE]},
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _problem(description: str) -> dict[str, Any]:
    return {"description": description, "content": {PROBLEM: {"schema": _ref("Problem")}}}


def _json(description: str, shape: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": _ref(shape)}},
    }
    if headers:
        doc["headers"] = headers
    return doc


def _body(shape: str) -> dict[str, Any]:
    return {
        "required": True,
        "content": {"application/json": {"schema": _ref(shape), "example": EXAMPLES[shape]}},
    }


def _header(name: str, description: str, *, required: bool = False, **schema: Any) -> Any:
    return {
        "name": name,
        "in": "header",
        "required": required,
        "description": description,
        "schema": {"type": "string", **schema},
    }


# What any JSON body can be refused for (views.common.read_json, the app's size cap, then the
# declarations and their rules).
JSON_BODY_ERRORS = {
    "400": _problem("malformed JSON (nested deeper than 200 levels included) or If-Match"),
    "413": _problem("the body is too large"),
    "415": _problem("not JSON"),
    "422": _problem("invalid fields, every one listed in `errors`"),
}
AUTH_ERRORS = {
    "401": _problem("No token, a malformed Authorization header, or an unknown/revoked token"),
    "429": _problem("Too many requests for this token; see Retry-After"),
}
ADMIN = {"403": _problem("the token is not an admin's")}
ETAG = {"ETag": {"schema": {"type": "string"}, "description": "the article's version"}}
SITE_ETAG = {"ETag": {"schema": {"type": "string"}, "description": "the link blocks' version"}}
IF_MATCH = 'the ETag from GET, quoted (If-Match: "24-2"); an empty or unquoted one is refused'
ETAGS = r'^\s*(\*|(W/)?"[^"]*"(\s*,\s*(W/)?"[^"]*")*)\s*$'  # RFC 9110 section 13.1.1
ARTICLE_ID = {
    "name": "id",
    "in": "path",
    "required": True,
    "schema": {"type": "integer", "minimum": 1, "maximum": 999999999999999999},
    "example": 1,
}
CATEGORY_SLUG = {
    "name": "slug",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "minLength": 1, "maxLength": 80, "pattern": shapes.SLUG_PATTERN},
    "example": "tin-hoat-dong",
}
BEARER: list[dict[str, list[str]]] = [{"bearer": []}]


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    """A model of a query string (shared/shapes.py), said as OpenAPI query parameters."""
    parameters = []
    for name, schema in model.model_json_schema()["properties"].items():
        schema = {k: v for k, v in schema.items() if k not in ("title", "default")}
        description = schema.pop("description", "")
        for branch in schema.pop("anyOf", ()):
            if branch.get("type") != "null":
                schema.update(branch)
        parameters.append(
            {"name": name, "in": "query", "description": description, "schema": schema}
        )
    return parameters


def _op(
    summary: str,
    responses: dict[str, Any],
    *,
    token: bool = True,
    body: str | dict[str, Any] | None = None,
    parameters: list[dict[str, Any]] | None = None,
    description: str = "",
) -> dict[str, Any]:
    """One operation; one that takes a token (`token`) says so, and what a token is refused for.
    `body`: a shape's name (its JSON, with its example) or a whole requestBody."""
    doc: dict[str, Any] = {"summary": summary, "security": BEARER if token else []}
    if description:
        doc["description"] = description
    if parameters:
        doc["parameters"] = parameters
    if body is not None:
        doc["requestBody"] = _body(body) if isinstance(body, str) else body
    doc["responses"] = {**responses, **AUTH_ERRORS} if token else responses
    return doc


IDEMPOTENCY_KEY = _header(
    "Idempotency-Key",
    "the same key and request replay the first answer",
    minLength=1,
    maxLength=255,
)
NO_ARTICLE = {"404": _problem("no such article for this token")}
STALE_ETAG = {"412": _problem("the ETag is not the article's current one")}
STILL_RUNNING = {"409": _problem("a request with this Idempotency-Key is still running")}
PATHS: dict[str, Any] = {
    "/healthz": {"get": _op("alive", {"200": _json("alive", "Health")}, token=False)},
    "/readyz": {
        "get": _op(
            "PostgreSQL and Redis reachable",
            {"200": _json("ready", "Health"), "503": _json("not ready", "Health")},
            token=False,
        )
    },
    "/api/v1/categories": {
        "get": _op("list categories", {"200": _json("categories", "Categories")}, token=False),
        "post": _op(
            "create a category (admin)",
            {
                "201": _json("created", "Category"),
                **JSON_BODY_ERRORS,
                **ADMIN,
                "409": _problem("the slug exists"),
            },
            body="CategoryIn",
        ),
    },
    "/api/v1/categories/{slug}": {
        "parameters": [CATEGORY_SLUG],
        "patch": _op(
            "rename, move in the menu, retire or bring back a category (admin)",
            {
                "200": _json("changed", "Category"),
                **JSON_BODY_ERRORS,
                **ADMIN,
                "404": _problem("no such category"),
            },
            body="CategoryPatch",
            description="A retired category leaves the menus, the home page and the"
            " sitemap; its page and feeds answer 410, or 301 to `redirect_to`; new articles"
            " in it are refused (422); its articles stay.",
        ),
        "delete": _op(
            "delete a category nothing needs (admin)",
            {
                "204": {"description": "deleted"},
                **ADMIN,
                "404": _problem("no such category"),
                "409": _problem(
                    "it has articles (type category-has-articles: retire it or move them),"
                    " or retired categories send their readers to it"
                ),
            },
        ),
    },
    "/api/v1/site": {
        "get": _op(
            "the sidebar's link blocks",
            {"200": _json("the link blocks", "Site", SITE_ETAG)},
            token=False,
        ),
        "put": _op(
            "replace the sidebar's link blocks (admin); every page shows them",
            {
                "200": _json("saved", "Site", SITE_ETAG),
                **JSON_BODY_ERRORS,
                **ADMIN,
                "412": _problem("the link blocks changed since the ETag was read"),
                "503": _problem("saved, but cached pages could not be refreshed; retry"),
            },
            body="SiteIn",
            parameters=[
                _header(
                    "If-Match",
                    "the ETag of GET /api/v1/site, to refuse a lost update",
                    pattern=ETAGS,
                )
            ],
        ),
    },
    "/api/v1/articles": {
        "get": _op(
            "list articles, newest first (submitters: their own)",
            {
                "200": _json("a page of articles, without their bodies", "ArticleList"),
                "422": _problem("an unknown parameter, status, limit or cursor"),
            },
            parameters=_query_parameters(shapes.ListingQuery),
        ),
        "post": _op(
            "submit an article",
            {
                "202": _json(
                    "accepted; a worker publishes it",
                    "Accepted",
                    {"Location": {"schema": {"type": "string"}}, **ETAG},
                ),
                "400": _problem("malformed JSON, multipart or Idempotency-Key"),
                **STILL_RUNNING,
                "413": _problem("too large: request, photo, pixel count or photo count"),
                "415": _problem("not JSON or multipart, or a photo in a refused format"),
                "422": _problem(
                    "invalid fields, an undecodable photo, or an"
                    " Idempotency-Key reused with another request"
                ),
            },
            description="JSON, or multipart/form-data with a part `article` (the JSON)"
            " and one part per photo named as in `images[].part`. Photos"
            " are JPEG, PNG, WebP, GIF or AVIF, decided by their bytes.",
            parameters=[IDEMPOTENCY_KEY],
            body={
                "required": True,
                "content": {
                    "application/json": {
                        "schema": _ref("ArticleIn"),
                        "example": EXAMPLE_ARTICLE,
                    },
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "required": ["article"],
                            "properties": {"article": _ref("ArticleIn")},
                            "additionalProperties": {"type": "string", "format": "binary"},
                        },
                        "encoding": {"article": {"contentType": "application/json"}},
                    },
                },
            },
        ),
    },
    "/api/v1/articles/batch": {
        "post": _op(
            f"submit up to {BATCH_LIMIT} JSON articles at once",
            {
                "200": _json("one result per article, in order", "BatchResults"),
                **JSON_BODY_ERRORS,
                **STILL_RUNNING,
            },
            description="The acceptable articles are written in one transaction; `results`"
            " has one entry per article, in order: what POST /api/v1/articles answers"
            " (`id`, `status`, `links`), or a problem with every field error of that article"
            " (pointers relative to it). Photos need the single POST.",
            parameters=[IDEMPOTENCY_KEY],
            body="BatchIn",
        )
    },
    "/api/v1/articles/{id}": {
        "parameters": [ARTICLE_ID],
        "get": _op(
            "an article, its status, photos and views",
            {"200": _json("the article", "Article", ETAG), **NO_ARTICLE},
        ),
        "patch": _op(
            "edit an article (If-Match required)",
            {
                "200": _json("the edited article", "Article", ETAG),
                **JSON_BODY_ERRORS,
                **NO_ARTICLE,
                **STALE_ETAG,
                "428": _problem("If-Match is missing"),
            },
            parameters=[
                _header("If-Match", IF_MATCH, required=True, pattern=ETAGS, example='"1-1"')
            ],
            body="ArticlePatch",
        ),
        "delete": _op(
            "unpublish (the page answers 410, the feeds drop it)",
            {
                "200": _json("the unpublished article", "Article", ETAG),
                "400": _problem("a malformed If-Match"),
                **NO_ARTICLE,
                **STALE_ETAG,
            },
            parameters=[_header("If-Match", IF_MATCH, pattern=ETAGS)],
        ),
    },
    "/api/v1/openapi.json": {
        "get": _op(
            "this document",
            {
                "200": {
                    "description": "OpenAPI 3.1",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                }
            },
            token=False,
        )
    },
}


@cache
def document() -> bytes:
    return dumps(
        {
            "openapi": "3.1.0",
            "info": {
                "title": "bantin submitters' API",
                "version": "1",
                "description": "Submit articles with photos to a bantin news portal. Errors"
                " are RFC 9457 problem details (application/problem+json).",
            },
            "servers": [{"url": "/"}],
            "components": {
                "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
                "schemas": shapes.schemas(),
            },
            "paths": PATHS,
        }
    )


async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=document(), content_type="application/json")
