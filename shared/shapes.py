"""The API's shapes, declared once: what submitters send and what they get back.

Requests are pydantic models: `check_article`, `check_category` and `check_site` validate with
them and turn every error into a field error at once (`{"field", "pointer", "message"}`, the
pointer an RFC 6901 JSON pointer). Answers are TypedDicts that mypy checks where they are built
and that `answer()` serializes through the same declarations. The OpenAPI document
(services/ingest/openapi.py) takes its schemas from `schemas()`, so it cannot drift.

pydantic rather than msgspec, measured on the seed article (17 kB of JSON): msgspec decodes and
validates in 45 us, pydantic in 134 us from bytes and 17 us from parsed JSON, both nothing next
to sanitizing and the commit (milliseconds). msgspec stops at the first error; the API answers
every field's error at once, which pydantic's `ValidationError.errors()` gives.

What a declaration cannot say lives in one named function beside it: `article_rules`
(blank after cleaning, the photo count, `cid:` references, a body that sanitizes to nothing),
`category_rules` (reserved slugs), `site_rules` (addresses). A category's existence needs the
database: services/ingest/submit.py checks it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Annotated, Any, NotRequired, TypeVar, get_args
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
)
from pydantic import create_model as _create_model
from pydantic.json_schema import JsonSchemaMode
from typing_extensions import TypedDict

from shared import site
from shared.articles import ArticleDraft, ImageDraft
from shared.html import cid_parts, sanitize, to_html
from shared.models import STATUSES, BodyFormat, ImageRole, RenditionFormat
from shared.problems import dumps, field_error
from shared.text import clean_text, search_text, slugify

M = TypeVar("M", bound=BaseModel)
RESERVED = frozenset(
    {
        "api",
        "feeds",
        "media",
        "static",
        "search",
        "healthz",
        "readyz",
        "metrics",
        "sitemap.xml",
        "robots.txt",
    }
)
# The years a publication time may fall in: every such time round-trips through PostgreSQL and
# Python in any UTC offset (year 1 at +14:00 is year 0 in UTC, which Python cannot hold). The
# document says it as a pattern.
YEARS = (1900, 2200)
EXAMPLE_TIME = "2022-01-12T08:16:46+07:00"
SLUG_PATTERN = r"^[a-z0-9]+(-[a-z0-9]+)*$"
PART_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
URL_PATTERN = r"^[Hh][Tt][Tt][Pp][Ss]?://[^\x00-\x20\x7f-\x9f\"'<>\\`]+$"
# What a pattern means, told to whoever missed it.
HINTS = {
    "part": "must be 1 to 100 letters, digits, '.', '_' or '-', like anh-1",
    "slug": "must be lowercase ASCII words joined by '-', like tin-hoat-dong",
    "url": "must be an absolute http(s) address like https://vksndtc.gov.vn/",
}
HINTS["redirect_to"] = HINTS["slug"]  # a category's slug too


def _time(value: Any) -> datetime | None:
    """A publication time: ISO 8601 with a UTC offset, within YEARS; "" and null mean none."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        when = value
    elif not isinstance(value, str):
        raise ValueError(f"must be an ISO 8601 string, for example {EXAMPLE_TIME}")
    else:
        try:
            when = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(
                f"is not an ISO 8601 date and time, for example {EXAMPLE_TIME}"
            ) from None
    if when.tzinfo is None:
        raise ValueError(f"needs a UTC offset, for example {EXAMPLE_TIME}")
    if not YEARS[0] <= when.year <= YEARS[1]:
        raise ValueError(f"must be between the years {YEARS[0]} and {YEARS[1]}")
    return when


Title = Annotated[
    str, Field(min_length=1, max_length=300, examples=["Hội nghị tổng kết công tác năm 2021"])
]
Slug = Annotated[
    str, Field(min_length=1, max_length=80, pattern=SLUG_PATTERN, examples=["tin-hoat-dong"])
]
Body = Annotated[
    str,
    Field(
        min_length=1, max_length=500_000, description='photos are placed with <img src="cid:PART">'
    ),
]
Summary = Annotated[str, Field(max_length=2000, description="the lead, plain text")]
Caption = Annotated[str, Field(max_length=2000)]
Byline = Annotated[str, Field(max_length=200)]  # author, unit
GalleryTitle = Annotated[str, Field(max_length=300)]
Tag = Annotated[str, Field(min_length=1, max_length=60)]
CategoryName = Annotated[str, Field(min_length=1, max_length=100, examples=["Tin hoạt động"])]
LinkTitle = Annotated[str, Field(min_length=1, max_length=200)]
BlockTitle = Annotated[str, Field(min_length=1, max_length=100)]
PublishedAt = Annotated[
    AwareDatetime | None,
    BeforeValidator(_time),
    WithJsonSchema(
        {
            "anyOf": [
                {
                    "type": "string",
                    "format": "date-time",
                    "pattern": r"^(19[0-9]{2}|2[01][0-9]{2}|2200)-",
                },
                {"type": "string", "maxLength": 0},
                {"type": "null"},
            ],
            "description": f"with a UTC offset, years {YEARS[0]} to {YEARS[1]}; in the future:"
            ' scheduled; null or "" for now',
            "examples": [EXAMPLE_TIME],
        },
        mode="validation",
    ),
]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class ImageIn(_In):
    """One photo of a multipart submission, in the article's order."""

    part: Annotated[str, Field(pattern=PART_PATTERN, description="the multipart part's name")]
    caption: Caption = ""
    role: ImageRole = "inline"


class ArticleIn(_In):
    """An article as a submitter sends it (samples/seed-article.json's `article`)."""

    title: Title
    category: Slug
    summary: Summary | None = ""
    body: Body
    body_format: BodyFormat = "html"
    author: Byline | None = ""
    unit: Byline | None = ""
    published_at: PublishedAt = None
    tags: Annotated[list[Tag], Field(max_length=20)] | None = None
    gallery_title: GalleryTitle | None = ""
    images: Annotated[
        list[ImageIn],
        Field(description="in order; multipart requests only; at most BANTIN_MAX_PHOTOS (50)"),
    ] = []


# The fields an edit may change: all but the photos.
EDITABLE = tuple(name for name in ArticleIn.model_fields if name != "images")
ArticlePatch: type[_In] = _create_model(  # type: ignore[call-overload]
    "ArticlePatch",
    __base__=_In,
    __doc__="The fields to change; photos cannot be changed by PATCH.",
    **{name: (ArticleIn.model_fields[name].rebuild_annotation(), None) for name in EDITABLE},
)


class CategoryIn(_In):
    slug: Slug = Field(default=None, description="made from the name when left out")  # type: ignore[assignment]
    name: CategoryName


class CategoryPatch(_In):
    """What an admin changes of a category; fields left out stay as they are."""

    name: CategoryName | None = None
    position: (
        Annotated[int, Field(ge=1, le=10_000, description="its place in the menu, 1 first")] | None
    ) = None
    retired: (
        Annotated[
            bool,
            Field(
                description="true: out of the menus, the home page and the sitemap; its page and"
                " feeds answer 410 (or 301 to redirect_to) and it takes no new articles; its"
                " articles stay. false: back in use, at the end of the menu"
            ),
        ]
        | None
    ) = None
    redirect_to: (
        Annotated[
            str,
            Field(
                min_length=1,
                max_length=80,
                pattern=SLUG_PATTERN,
                description="with retired: true, the category in use its readers are sent to",
            ),
        ]
        | None
    ) = None


class LinkIn(_In):
    title: LinkTitle
    url: Annotated[
        str,
        Field(
            max_length=2000,
            pattern=URL_PATTERN,
            json_schema_extra={"format": "uri"},
            examples=["https://vksndtc.gov.vn/"],
        ),
    ]


class LinkBlockIn(_In):
    title: BlockTitle
    links: Annotated[list[LinkIn], Field(min_length=1, max_length=50)]


class SiteIn(_In):
    """What every page of the readers' site shows in its sidebar."""

    link_blocks: Annotated[list[LinkBlockIn], Field(max_length=10)]


class BatchIn(_In):
    articles: Annotated[
        list[Any],
        Field(
            min_length=1,
            max_length=500,
            description="each an ArticleIn, checked (and refused) one by one: see the results",
        ),
    ]


def _status(value: str | None) -> str | None:
    if value is not None and value not in STATUSES:
        raise ValueError(f"must be one of {', '.join(STATUSES)}")
    return value


class ListingQuery(BaseModel):
    """GET /api/v1/articles's query: strings from the URL, a number for `limit`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    status: Annotated[
        str | None,
        AfterValidator(_status),
        Field(json_schema_extra={"enum": list(STATUSES)}, description="only this status's"),
    ] = None
    category: Annotated[str | None, Field(description="only this category's (its slug)")] = None
    q: Annotated[
        str | None,
        Field(description="words of the title; diacritics and tone habits do not matter"),
    ] = None
    limit: Annotated[int, Field(ge=1, le=500, description="articles per page")] = 50
    cursor: Annotated[
        str | None,
        Field(pattern=r"^[0-9a-z]{1,13}$", description="the previous page's `next` has it"),
    ] = None


# --- answers ----------------------------------------------------------------------------------


class FieldError(TypedDict):
    field: str
    pointer: str
    message: str


class Problem(TypedDict):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: NotRequired[str]
    instance: NotRequired[str]
    errors: NotRequired[list[FieldError]]


class Links(TypedDict):
    self: Annotated[str, Field(json_schema_extra={"format": "uri"})]
    page: Annotated[str, Field(json_schema_extra={"format": "uri"})]


# The statuses' one list is shared/models.py's (the database's CHECK follows it).
Status = Annotated[str, Field(json_schema_extra={"enum": list(STATUSES)})]


class Accepted(TypedDict):
    id: int
    status: Status
    links: Links


class Rendition(TypedDict):
    url: str
    width: int
    height: int
    format: RenditionFormat


class Image(TypedDict):
    part: str
    caption: str
    role: ImageRole
    width: Annotated[int | None, Field(description="upright")]
    height: int | None
    error: NotRequired[str]
    renditions: list[Rendition]


class ArticleItem(TypedDict):
    """An article as the listing gives it: everything but the body."""

    id: int
    uuid: Annotated[str, Field(json_schema_extra={"format": "uuid"})]
    status: Status
    error: NotRequired[str]
    title: str
    category: str
    summary: str
    body_format: BodyFormat
    author: str
    unit: str
    tags: list[str]
    gallery_title: str
    published_at: datetime | None
    created_at: datetime
    updated_at: datetime
    version: int
    views: int
    images: list[Image]
    links: Links


class Article(ArticleItem):
    body: Annotated[str, Field(description="sanitized HTML")]


class ArticleList(TypedDict):
    items: list[ArticleItem]
    next: Annotated[str | None, Field(description="the next page, or null at the end")]


class BatchResults(TypedDict):
    accepted: int
    refused: int
    results: Annotated[
        list[Accepted | Problem], Field(description="one per submitted article, in order")
    ]


class Category(TypedDict):
    slug: str
    name: str
    retired_at: NotRequired[Annotated[datetime, Field(description="only when retired")]]
    redirect_to: NotRequired[
        Annotated[str | None, Field(description="where a retired one sends its readers")]
    ]


class Link(TypedDict):
    title: str
    url: str


class LinkBlock(TypedDict):
    title: str
    links: list[Link]


class Site(TypedDict):
    link_blocks: list[LinkBlock]


class Health(TypedDict):
    status: str


REQUESTS: tuple[type[BaseModel], ...] = (
    ArticleIn,
    ArticlePatch,
    CategoryIn,
    CategoryPatch,
    SiteIn,
    BatchIn,
)
# Said as query parameters (services/ingest/openapi.py), not as a schema of its own.
QUERIES: tuple[type[BaseModel], ...] = (ListingQuery,)
ANSWERS: dict[str, Any] = {
    "Problem": Problem,
    "Accepted": Accepted,
    "Article": Article,
    "ArticleItem": ArticleItem,
    "ArticleList": ArticleList,
    "BatchResults": BatchResults,
    "Category": Category,
    "Categories": list[Category],
    "Site": Site,
    "Health": Health,
}
_adapters = {name: TypeAdapter(shape) for name, shape in ANSWERS.items()}


def encode(shape: str, value: Any) -> bytes:
    """`value` as JSON through the declaration `shape` (datetimes as RFC 3339, UTF-8)."""
    return _adapters[shape].dump_json(value)


def schemas() -> dict[str, Any]:
    """Every shape's JSON Schema (2020-12, as OpenAPI 3.1 takes it), keyed by name."""
    inputs: list[tuple[str, JsonSchemaMode, TypeAdapter[Any]]] = [
        (model.__name__, "validation", TypeAdapter(model)) for model in REQUESTS
    ]
    outputs: list[tuple[str, JsonSchemaMode, TypeAdapter[Any]]] = [
        (name, "serialization", adapter) for name, adapter in _adapters.items()
    ]
    _, top = TypeAdapter.json_schemas(
        [*inputs, *outputs], ref_template="#/components/schemas/{model}"
    )
    found: dict[str, Any] = top.get("$defs", {})
    for name, schema in (
        ("Categories", _adapters["Categories"].json_schema(mode="serialization")),
    ):
        found[name] = {k: v for k, v in schema.items() if k != "$defs"}
        found[name]["items"] = {"$ref": "#/components/schemas/Category"}
    return found


# --- checking -------------------------------------------------------------------------------


@dataclass(slots=True)
class Submission:
    """A checked article, before its category is looked up and its photos are stored."""

    title: str
    category: str
    summary: str
    body_source: str
    body_format: str
    body_html: str
    author: str
    unit: str
    gallery_title: str
    published_at: datetime | None
    tags: tuple[str, ...]
    images: list[dict[str, str]] = field(default_factory=list)
    slug: str = ""
    search_text: str = ""

    def draft(self, category_id: int, images: Sequence[ImageDraft] = ()) -> ArticleDraft:
        """What the data layer stores of this article (the API's and the importer's writes
        alike), with the photos already in the media store."""
        given = {name: getattr(self, name) for name in _DRAFTED}
        return ArticleDraft(**given, category_id=category_id, images=tuple(images))


# What a Submission hands on to its ArticleDraft as it is (all but the category and photos).
_DRAFTED = tuple(f.name for f in fields(ArticleDraft) if f.name not in ("category_id", "images"))


def check_article(data: Any, *, max_photos: int) -> tuple[Submission | None, list[dict[str, str]]]:
    """(submission, []) when the article is acceptable, else (None, every field error)."""
    article, errors = _validate(ArticleIn, data, "article")
    if not isinstance(data, dict):
        return None, errors
    body = article_rules(data, article, errors, max_photos=max_photos)
    if article is None or body is None or errors:
        return None, errors
    body_source, body_html = body
    title = clean_text(article.title)
    summary = clean_text(article.summary or "", multiline=True)
    return Submission(
        title=title,
        category=article.category,
        summary=summary,
        body_source=body_source,
        body_format=article.body_format,
        body_html=body_html,
        author=clean_text(article.author or ""),
        unit=clean_text(article.unit or ""),
        gallery_title=clean_text(article.gallery_title or ""),
        published_at=article.published_at,
        tags=tuple(dict.fromkeys(t for t in map(clean_text, article.tags or ()) if t)),
        images=[
            {"part": i.part, "caption": clean_text(i.caption), "role": i.role}
            for i in article.images
        ],
        slug=slugify(title),
        search_text=search_text(title, summary, _strip_tags(body_html)),
    ), []


def article_rules(
    data: dict[str, Any],
    article: ArticleIn | None,
    errors: list[dict[str, str]],
    *,
    max_photos: int,
) -> tuple[str, str] | None:
    """The rules no declaration states, added to `errors`; returns the body (cleaned, and
    sanitized HTML) when everything is acceptable. Each rule looks only at fields that passed
    their declaration, so a field is told one thing at a time. Bodies are long: each is
    cleaned once (a body of invisible characters only is told it has nothing left)."""
    bad = {e["field"].split(".")[0] for e in errors}
    for name in ("title", "category", "body"):
        value = data.get(name)
        if name not in bad and isinstance(value, str) and not _visible(value, long=name == "body"):
            errors.append(field_error(name, "must not be blank"))
            bad.add(name)
    images = data.get("images")
    parts: list[str] = []
    if "images" not in bad and isinstance(images, list):
        if len(images) > max_photos:
            errors.append(field_error("images", f"at most {max_photos} photos per article"))
        parts = [
            i["part"] for i in images if isinstance(i, dict) and isinstance(i.get("part"), str)
        ]
        for part in sorted({p for p in parts if parts.count(p) > 1}):
            errors.append(field_error("images", f"part {part!r} is listed twice"))
    body = data.get("body")
    if "body" not in bad and isinstance(body, str):
        for part in cid_parts(body):
            if part not in parts:
                errors.append(
                    field_error("body", f"refers to photo cid:{part}, which is not in images")
                )
    if article is None or errors:
        return None
    source = clean_text(article.body, multiline=True)
    body_html = sanitize(to_html(source, article.body_format), parts)
    if not _strip_tags(body_html).strip() and "<img" not in body_html:
        errors.append(
            field_error(
                "body",
                "has nothing left once scripts, styles and other markup that pages do not"
                " show are removed; send the article's text",
            )
        )
        return None
    return source, body_html


def _visible(value: str, *, long: bool) -> bool:
    return bool(value.strip() if long else clean_text(value))


def check_batch(data: Any) -> tuple[list[Any] | None, list[dict[str, str]]]:
    """(the articles, []) when the envelope is acceptable; each article is then checked (and
    refused) on its own by `check_article`."""
    batch, errors = _validate(BatchIn, data, "batch")
    return (batch.articles if batch is not None else None), errors


def check_listing(query: Mapping[str, str]) -> tuple[ListingQuery | None, list[dict[str, str]]]:
    return _validate(ListingQuery, dict(query), "query")


def check_patch(changes: Any) -> list[dict[str, str]]:
    """The errors of an edit's own shape (unknown fields, wrong types); the edited article is
    then checked whole by `check_article`."""
    return _validate(ArticlePatch, changes, "article")[1]


def check_category(data: Any) -> tuple[tuple[str, str] | None, list[dict[str, str]]]:
    """((slug, name), []) when acceptable, else (None, every field error)."""
    category, errors = _validate(CategoryIn, data, "category")
    checked = category_rules(data, category, errors)
    return (checked, []) if checked is not None and not errors else (None, errors)


def category_rules(
    data: Any, category: CategoryIn | None, errors: list[dict[str, str]]
) -> tuple[str, str] | None:
    """A blank name, a slug that cannot be made from the name, reserved slugs."""
    if category is None:
        return None
    name = clean_text(category.name)
    if not name:
        errors.append(field_error("name", "must not be blank"))
        return None
    slug = category.slug if category.slug is not None else slugify(name)
    if slug in RESERVED:
        errors.append(field_error("slug", f"{slug!r} is reserved for the site's own pages"))
        return None
    return slug, name


def check_category_patch(data: Any, slug: str) -> tuple[CategoryPatch | None, list[dict[str, str]]]:
    """(the change, []) when acceptable, else (None, every field error)."""
    patch, errors = _validate(CategoryPatch, data, "category")
    patch = category_patch_rules(patch, slug, errors)
    return (patch, []) if patch is not None and not errors else (None, errors)


def category_patch_rules(
    patch: CategoryPatch | None, slug: str, errors: list[dict[str, str]]
) -> CategoryPatch | None:
    """Something to change, a name that is not blank once cleaned, a target only when
    retiring and never the category itself. The target's existence needs the database
    (shared/articles.py's change_category)."""
    if patch is None:
        return None
    if all(getattr(patch, name) is None for name in CategoryPatch.model_fields):
        known = ", ".join(CategoryPatch.model_fields)
        errors.append(field_error("category", f"has nothing to change; send one of {known}"))
        return None
    if patch.name is not None and not clean_text(patch.name):
        errors.append(field_error("name", "must not be blank"))
    if patch.redirect_to is not None:
        if patch.retired is not True:
            errors.append(field_error("redirect_to", 'goes with "retired": true'))
        elif patch.redirect_to == slug:
            errors.append(
                field_error("redirect_to", "must be another category than the retired one")
            )
    return (
        None
        if errors
        else patch.model_copy(
            update={"name": clean_text(patch.name)} if patch.name is not None else {}
        )
    )


def check_site(data: Any) -> tuple[tuple[site.LinkBlock, ...] | None, list[dict[str, str]]]:
    """(blocks, []) when acceptable, else (None, every field error)."""
    checked, errors = _validate(SiteIn, data, "site")
    blocks = site_rules(data, checked, errors)
    return (blocks, []) if blocks is not None and not errors else (None, errors)


def site_rules(
    data: Any, checked: SiteIn | None, errors: list[dict[str, str]]
) -> tuple[site.LinkBlock, ...] | None:
    """Titles that clean to nothing, and addresses: a host, a numeric port, no user name.
    Looks at every block and link of the right shape whose field passed its declaration."""
    bad = {e["field"] for e in errors}

    def rule(where: str, value: Any, ok: Callable[[str], object], message: str) -> None:
        if isinstance(value, str) and where not in bad and not ok(value):
            errors.append(field_error(where, message))

    blocks = data.get("link_blocks") if isinstance(data, dict) else None
    for n, block in enumerate(blocks if isinstance(blocks, list) else ()):
        if not isinstance(block, dict):
            continue
        where = f"link_blocks.{n}"
        rule(f"{where}.title", block.get("title"), clean_text, "must not be blank")
        links = block.get("links")
        for k, link in enumerate(links if isinstance(links, list) else ()):
            if isinstance(link, dict):
                rule(f"{where}.links.{k}.title", link.get("title"), clean_text, "must not be blank")
                rule(
                    f"{where}.links.{k}.url",
                    link.get("url"),
                    _usable_url,
                    "needs a host name, a numeric port if any and no user name:"
                    " an address like https://vksndtc.gov.vn/",
                )
    if checked is None or errors:
        return None
    return tuple(
        site.LinkBlock(
            clean_text(b.title), tuple(site.Link(clean_text(k.title), k.url) for k in b.links)
        )
        for b in checked.link_blocks
    )


def _usable_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError:
        return False
    return bool(parts.hostname) and "@" not in parts.netloc


def _validate(model: type[M], data: Any, root: str) -> tuple[M | None, list[dict[str, str]]]:
    try:
        return model.model_validate(data), []
    except ValidationError as err:
        return None, [_field_error(model, e, root) for e in err.errors(include_url=False)]


def _field_error(model: type[BaseModel], error: Any, root: str) -> dict[str, str]:
    loc = tuple(error["loc"])
    # A union (`str | None`) names its branch in the path: the submitter never sees it.
    loc = tuple(
        step
        for step in loc
        if not (isinstance(step, str) and (step in ("str", "none") or "[" in step))
    )
    # A key may be the client's own (an unknown field), control characters and lone surrogates
    # included: written escaped, so that the answer can be stored (PostgreSQL's jsonb refuses
    # \u0000) and read. The pointer escapes '~' and '/' as RFC 6901 says.
    steps = [_printable(str(step)) for step in loc]
    if not steps:
        return field_error(root, _message(model, loc, error))
    return {
        "field": ".".join(steps),
        "pointer": "".join("/" + s.replace("~", "~0").replace("/", "~1") for s in steps),
        "message": _message(model, loc, error),
    }


def _printable(text: str) -> str:
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def _message(model: type[BaseModel], loc: tuple[Any, ...], error: Any) -> str:
    kind, ctx, value = error["type"], error.get("ctx") or {}, error.get("input")
    last = next((s for s in reversed(loc) if isinstance(s, str)), "")
    if kind == "missing" or (value is None and kind.endswith("_type")):
        return "is required"
    if kind == "extra_forbidden":
        known = ", ".join(_model_at(model, loc[:-1]).model_fields)
        if model is ArticlePatch and len(loc) == 1:
            return f"cannot be changed with PATCH; editable fields: {known}"
        return f"unknown field; known fields: {known}"
    if kind == "model_type" or kind == "dict_type":
        return "must be a JSON object"
    if kind == "string_type":
        return "must be a string"
    if kind == "list_type":
        return "must be a list"
    if kind in ("bool_type", "bool_parsing"):
        return "must be true or false"
    if kind == "string_too_long":
        return f"is too long ({len(value)} characters; at most {ctx['max_length']})"
    if kind == "string_too_short":
        return "must not be empty"
    if kind == "int_parsing" or kind == "int_type":
        return "must be a whole number"
    if kind == "greater_than_equal":
        return f"must be at least {ctx['ge']}"
    if kind == "less_than_equal":
        return f"must be at most {ctx['le']}"
    if kind == "too_long":
        return f"has too many items (at most {ctx['max_length']})"
    if kind == "too_short":
        return f"needs at least {ctx['min_length']} item"
    if kind == "literal_error":
        return f"must be one of {ctx['expected']}"
    if kind == "string_pattern_mismatch":
        return HINTS.get(last, f"must match {ctx['pattern']}")
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    message: str = error["msg"]
    return message[:1].lower() + message[1:]


def _model_at(model: type[BaseModel], path: tuple[Any, ...]) -> type[BaseModel]:
    for step in path:
        if isinstance(step, str):
            model = _inner_model(model.model_fields[step].annotation) or model
    return model


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def _strip_tags(fragment: str) -> str:
    return re.sub(r"<[^>]+>", " ", fragment)


__all__ = [
    "EDITABLE",
    "Submission",
    "check_article",
    "check_batch",
    "check_category",
    "check_category_patch",
    "check_listing",
    "check_patch",
    "check_site",
    "dumps",
]
