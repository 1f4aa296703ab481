"""The OpenAPI 3.1 description of the submitters' API, served at /api/v1/openapi.json.

Written by hand next to the handlers it describes; the test suite runs schemathesis against it,
so a difference between this document and the behaviour fails the build.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from services.ingest.validation import EDITABLE, FORMATS, LIMITS, MAX_TAGS, ROLES
from services.ingest.views.site import BLOCK_TITLE, LINK_TITLE, MAX_BLOCKS, MAX_LINKS, URL_LENGTH
from shared.models import STATUSES

PROBLEM = "application/problem+json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _problem(description: str, schema: str = "Problem") -> dict[str, Any]:
    return {"description": description, "content": {PROBLEM: {"schema": _ref(schema)}}}


def _json(
    description: str, schema: dict[str, Any], headers: dict[str, Any] | None = None
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": schema}},
    }
    if headers:
        doc["headers"] = headers
    return doc


# What any JSON body can be refused for (services/ingest/views/common.py: read_json and the
# app's size cap, then validation).
JSON_BODY_ERRORS = {
    "400": _problem("malformed JSON"),
    "413": _problem("the body is too large"),
    "415": _problem("not JSON"),
    "422": _problem("invalid fields"),
}
AUTH_ERRORS = {
    "401": _problem("No token, a malformed Authorization header, or an unknown/revoked token"),
    "429": _problem("Too many requests for this token; see Retry-After"),
}
ETAG = {"ETag": {"schema": {"type": "string"}, "description": "the article's version"}}
SITE_ETAG = {"ETag": {"schema": {"type": "string"}, "description": "the link blocks' version"}}
ARTICLE_ID = {
    "name": "id",
    "in": "path",
    "required": True,
    "schema": {"type": "integer", "minimum": 1, "maximum": 999999999999999999},
}


def _text(limit: int, description: str = "") -> dict[str, Any]:
    doc: dict[str, Any] = {"type": "string", "maxLength": limit}
    if description:
        doc["description"] = description
    return doc


ARTICLE_FIELDS: dict[str, Any] = {
    "title": _text(LIMITS["title"]),
    "category": {"type": "string", "description": "a category slug"},
    "summary": _text(LIMITS["summary"], "the lead, plain text"),
    "body": _text(LIMITS["body"], 'photos are placed with <img src="cid:PART">'),
    "body_format": {"type": "string", "enum": list(FORMATS), "default": "html"},
    "author": _text(LIMITS["author"]),
    "unit": _text(LIMITS["unit"]),
    "published_at": {
        "type": ["string", "null"],
        "format": "date-time",
        "description": "with a UTC offset; in the future: scheduled",
    },
    "tags": {"type": "array", "maxItems": MAX_TAGS, "items": _text(LIMITS["tag"])},
    "gallery_title": _text(LIMITS["gallery_title"]),
}

SCHEMAS: dict[str, Any] = {
    "Problem": {
        "type": "object",
        "required": ["type", "title", "status"],
        "description": "RFC 9457 problem details",
        "properties": {
            "type": {"type": "string", "format": "uri"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "instance": {"type": "string"},
            "errors": {"type": "array", "items": _ref("FieldError")},
        },
    },
    "FieldError": {
        "type": "object",
        "required": ["field", "pointer", "message"],
        "properties": {
            "field": {"type": "string"},
            "pointer": {"type": "string"},
            "message": {"type": "string"},
        },
    },
    "Category": {
        "type": "object",
        "required": ["slug", "name"],
        "properties": {
            "slug": {"type": "string", "pattern": "^[a-z0-9]+(-[a-z0-9]+)*$"},
            "name": {"type": "string"},
        },
    },
    "CategoryInput": {
        "type": "object",
        "required": ["name"],
        "properties": {
            "slug": {
                "type": "string",
                "pattern": "^[a-z0-9]+(-[a-z0-9]+)*$",
                "maxLength": 80,
                "description": "made from the name when left out",
            },
            "name": {"type": "string", "minLength": 1, "maxLength": 100},
        },
    },
    "ImageInput": {
        "type": "object",
        "required": ["part"],
        "properties": {
            "part": {"type": "string", "description": "the multipart part carrying the photo"},
            "caption": {"type": "string"},
            "role": {"type": "string", "enum": list(ROLES), "default": "inline"},
        },
    },
    "ArticleInput": {
        "type": "object",
        "required": ["title", "category", "body"],
        "additionalProperties": False,
        "properties": {
            **ARTICLE_FIELDS,
            "images": {
                "type": "array",
                "items": _ref("ImageInput"),
                "description": "in order; multipart requests only",
            },
        },
    },
    "ArticlePatch": {
        "type": "object",
        "additionalProperties": False,
        "description": "the fields to change; photos cannot be changed by PATCH",
        "properties": {name: ARTICLE_FIELDS[name] for name in EDITABLE},
    },
    "Links": {
        "type": "object",
        "required": ["self", "page"],
        "properties": {"self": {"type": "string"}, "page": {"type": "string"}},
    },
    "Accepted": {
        "type": "object",
        "required": ["id", "status", "links"],
        "properties": {
            "id": {"type": "integer"},
            "status": {"enum": list(STATUSES)},
            "links": _ref("Links"),
        },
    },
    "Rendition": {
        "type": "object",
        "required": ["url", "width", "height", "format"],
        "properties": {
            "url": {"type": "string"},
            "width": {"type": "integer"},
            "height": {"type": "integer"},
            "format": {"enum": ["jpeg", "png", "webp", "avif"]},
        },
    },
    "Image": {
        "type": "object",
        "required": ["part", "caption", "role", "renditions"],
        "properties": {
            "part": {"type": "string"},
            "caption": {"type": "string"},
            "role": {"enum": list(ROLES)},
            "width": {"type": ["integer", "null"], "description": "upright"},
            "height": {"type": ["integer", "null"]},
            "error": {"type": "string"},
            "renditions": {"type": "array", "items": _ref("Rendition")},
        },
    },
    "Article": {
        "type": "object",
        "required": [
            "id",
            "uuid",
            "status",
            "title",
            "category",
            "summary",
            "body",
            "body_format",
            "author",
            "unit",
            "tags",
            "gallery_title",
            "published_at",
            "created_at",
            "updated_at",
            "version",
            "views",
            "images",
            "links",
        ],
        "properties": {
            "id": {"type": "integer"},
            "uuid": {"type": "string", "format": "uuid"},
            "status": {"enum": list(STATUSES)},
            "error": {"type": "string"},
            "title": {"type": "string"},
            "category": {"type": "string"},
            "summary": {"type": "string"},
            "body": {"type": "string", "description": "sanitized HTML"},
            "body_format": {"enum": list(FORMATS)},
            "author": {"type": "string"},
            "unit": {"type": "string"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "gallery_title": {"type": "string"},
            "published_at": {"type": ["string", "null"], "format": "date-time"},
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"},
            "version": {"type": "integer"},
            "views": {"type": "integer"},
            "images": {"type": "array", "items": _ref("Image")},
            "links": _ref("Links"),
        },
    },
    "Link": {
        "type": "object",
        "required": ["title", "url"],
        "additionalProperties": False,
        "properties": {
            "title": {"type": "string", "minLength": 1, "maxLength": LINK_TITLE},
            "url": {
                "type": "string",
                "maxLength": URL_LENGTH,
                "description": "an absolute http:// or https:// address",
            },
        },
    },
    "LinkBlock": {
        "type": "object",
        "required": ["title", "links"],
        "additionalProperties": False,
        "properties": {
            "title": {"type": "string", "minLength": 1, "maxLength": BLOCK_TITLE},
            "links": {
                "type": "array",
                "minItems": 1,
                "maxItems": MAX_LINKS,
                "items": _ref("Link"),
            },
        },
    },
    "Site": {
        "type": "object",
        "required": ["link_blocks"],
        "additionalProperties": False,
        "description": "what every page of the readers' site shows in its sidebar",
        "properties": {
            "link_blocks": {"type": "array", "maxItems": MAX_BLOCKS, "items": _ref("LinkBlock")}
        },
    },
    "Health": {
        "type": "object",
        "required": ["status"],
        "properties": {"status": {"type": "string"}},
    },
}

DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "bantin submitters' API",
        "version": "1",
        "description": "Submit articles with photos to a bantin news portal. Errors are RFC 9457"
        " problem details (application/problem+json).",
    },
    "servers": [{"url": "/"}],
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": SCHEMAS,
    },
    "paths": {
        "/healthz": {
            "get": {
                "summary": "alive",
                "security": [],
                "responses": {"200": _json("alive", _ref("Health"))},
            }
        },
        "/readyz": {
            "get": {
                "summary": "PostgreSQL and Redis reachable",
                "security": [],
                "responses": {
                    "200": _json("ready", _ref("Health")),
                    "503": _json("not ready", _ref("Health")),
                },
            }
        },
        "/api/v1/categories": {
            "get": {
                "summary": "list categories",
                "security": [],
                "responses": {
                    "200": _json("categories", {"type": "array", "items": _ref("Category")})
                },
            },
            "post": {
                "summary": "create a category (admin)",
                "security": [{"bearer": []}],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("CategoryInput")}},
                },
                "responses": {
                    "201": _json("created", _ref("Category")),
                    **JSON_BODY_ERRORS,
                    "403": _problem("the token is not an admin's"),
                    "409": _problem("the slug exists"),
                    **AUTH_ERRORS,
                },
            },
        },
        "/api/v1/site": {
            "get": {
                "summary": "the sidebar's link blocks",
                "security": [],
                "responses": {"200": _json("the link blocks", _ref("Site"), SITE_ETAG)},
            },
            "put": {
                "summary": "replace the sidebar's link blocks (admin); every page shows them",
                "security": [{"bearer": []}],
                "parameters": [
                    {
                        "name": "If-Match",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string"},
                        "description": "the ETag of GET /api/v1/site, to refuse a lost update",
                    }
                ],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("Site")}},
                },
                "responses": {
                    "200": _json("saved", _ref("Site"), SITE_ETAG),
                    **JSON_BODY_ERRORS,
                    "403": _problem("the token is not an admin's"),
                    "412": _problem("the link blocks changed since the ETag was read"),
                    "503": _problem("saved, but cached pages could not be refreshed; retry"),
                    **AUTH_ERRORS,
                },
            },
        },
        "/api/v1/articles": {
            "post": {
                "summary": "submit an article",
                "description": "JSON, or multipart/form-data with a part `article` (the JSON)"
                " and one part per photo named as in `images[].part`. Photos"
                " are JPEG, PNG, WebP, GIF or AVIF, decided by their bytes.",
                "security": [{"bearer": []}],
                "parameters": [
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                    }
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": _ref("ArticleInput")},
                        "multipart/form-data": {
                            "schema": {
                                "type": "object",
                                "required": ["article"],
                                "properties": {"article": _ref("ArticleInput")},
                                "additionalProperties": {"type": "string", "format": "binary"},
                            },
                            "encoding": {"article": {"contentType": "application/json"}},
                        },
                    },
                },
                "responses": {
                    "202": _json(
                        "accepted; a worker publishes it",
                        _ref("Accepted"),
                        {"Location": {"schema": {"type": "string"}}, **ETAG},
                    ),
                    "400": _problem("malformed JSON or Idempotency-Key"),
                    "409": _problem("a request with this Idempotency-Key is still running"),
                    "413": _problem("too large: request, photo, pixel count or photo count"),
                    "415": _problem("not JSON or multipart, or a photo in a refused format"),
                    "422": _problem(
                        "invalid fields, an undecodable photo, or an"
                        " Idempotency-Key reused with another request"
                    ),
                    **AUTH_ERRORS,
                },
            },
        },
        "/api/v1/articles/{id}": {
            "parameters": [ARTICLE_ID],
            "get": {
                "summary": "an article, its status, photos and views",
                "security": [{"bearer": []}],
                "responses": {
                    "200": _json("the article", _ref("Article"), ETAG),
                    "404": _problem("no such article for this token"),
                    **AUTH_ERRORS,
                },
            },
            "patch": {
                "summary": "edit an article (If-Match required)",
                "security": [{"bearer": []}],
                "parameters": [
                    {
                        "name": "If-Match",
                        "in": "header",
                        "required": True,
                        "schema": {"type": "string"},
                    }
                ],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("ArticlePatch")}},
                },
                "responses": {
                    "200": _json("the edited article", _ref("Article"), ETAG),
                    **JSON_BODY_ERRORS,
                    "404": _problem("no such article for this token"),
                    "412": _problem("the article changed since the ETag was read"),
                    "428": _problem("If-Match is missing"),
                    **AUTH_ERRORS,
                },
            },
            "delete": {
                "summary": "unpublish (the page answers 410, the feeds drop it)",
                "security": [{"bearer": []}],
                "parameters": [
                    {
                        "name": "If-Match",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string"},
                    }
                ],
                "responses": {
                    "200": _json("the unpublished article", _ref("Article"), ETAG),
                    "404": _problem("no such article for this token"),
                    "412": _problem("the article changed since the ETag was read"),
                    **AUTH_ERRORS,
                },
            },
        },
        "/api/v1/openapi.json": {
            "get": {
                "summary": "this document",
                "security": [],
                "responses": {"200": _json("OpenAPI 3.1", {"type": "object"})},
            }
        },
    },
}


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(DOCUMENT)
