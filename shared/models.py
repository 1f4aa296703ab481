"""Plain, immutable records that the data layer hands to both sides.

They carry no database handles and no behaviour beyond derived values, so they can be passed
to templates, feed renderers and JSON encoders alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, get_args
from uuid import UUID

# The one declaration of each closed list of values. The migrations' CHECK constraints cannot
# import them; tests/test_migrations.py holds the schema to exactly these.
# `pending` and `returned` only with BANTIN_REVIEW=on (services/ingest/views/review.py).
REVIEW_STATUSES = ("pending", "returned")
STATUSES = (*REVIEW_STATUSES, "processing", "scheduled", "published", "failed", "unpublished")
ImageRole = Literal["inline", "cover", "gallery"]
ROLES: tuple[str, ...] = get_args(ImageRole)
BodyFormat = Literal["html", "markdown", "text"]
BODY_FORMATS: tuple[str, ...] = get_args(BodyFormat)
RenditionFormat = Literal["jpeg", "png", "webp", "avif"]
RENDITION_FORMATS: tuple[str, ...] = get_args(RenditionFormat)
TOKEN_ROLES = ("submitter", "editor", "admin")
ACCOUNT_ROLES = TOKEN_ROLES


@dataclass(frozen=True, slots=True)
class Category:
    id: int
    slug: str
    name: str
    # Retired (migration 0009): out of the menus, its page and feeds gone (410) or sent on
    # to `redirect_to` (a slug), and no new articles in it.
    retired_at: datetime | None = None
    redirect_to: str | None = None

    @property
    def path(self) -> str:
        return f"/{self.slug}/"

    def refusal(self) -> str | None:
        """Why a new article cannot go into this category (None: it can). Every way in (the
        API, the desk, a batch, an importer) asks this one question."""
        if self.retired_at is None:
            return None
        where = (
            f"use {self.redirect_to!r}, where its readers are sent now"
            if self.redirect_to
            else "GET /api/v1/categories lists those in use"
        )
        return f"category {self.slug!r} is retired and takes no new articles; {where}"


@dataclass(frozen=True, slots=True)
class Rendition:
    """One encoded size of a photo; `path` is relative to the site root (/media/...)."""

    path: str
    width: int
    height: int
    format: str  # one of RENDITION_FORMATS
    bytes: int = 0  # the file's size


@dataclass(frozen=True, slots=True)
class Image:
    id: int
    position: int
    part: str
    caption: str
    role: str  # one of ROLES
    width: int | None = None  # upright size of the original, once known
    height: int | None = None
    error: str | None = None
    placeholder: str | None = None  # a CSS colour such as "#a0b1c2"
    renditions: tuple[Rendition, ...] = ()


@dataclass(frozen=True, slots=True)
class Article:
    id: int
    uuid: UUID
    slug: str
    category: Category
    title: str
    summary: str
    body_html: str  # sanitized; photos appear as <img src="cid:PART">
    body_format: str
    author: str
    unit: str
    status: str
    published_at: datetime | None  # aware, UTC
    created_at: datetime
    updated_at: datetime
    version: int
    gallery_title: str = ""
    tags: tuple[str, ...] = ()
    images: tuple[Image, ...] = field(default_factory=tuple)
    submitted_by: int | None = None
    error: str | None = None

    @property
    def path(self) -> str:
        """The article page, relative to the site root; stable because it ends with the id."""
        return f"/{self.category.slug}/{self.slug}-{self.id}"

    @property
    def etag(self) -> str:
        return f'"{self.id}-{self.version}"'
