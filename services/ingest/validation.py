"""Checking what a submitter sends: every problem is collected and answered at once, each with
the field it concerns, so a newsroom script can be fixed in one round trip."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared.html import cid_parts, sanitize, to_html
from shared.problems import field_error
from shared.text import clean_text, search_text, slugify

LIMITS = {
    "title": 300,
    "summary": 2000,
    "author": 200,
    "unit": 200,
    "gallery_title": 300,
    "body": 500_000,
    "tag": 60,
}
MAX_TAGS = 20
FORMATS = ("html", "markdown", "text")
ROLES = ("inline", "cover", "gallery")
RESERVED = {
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
PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
# The article's fields, in the order of the seed's JSON; all but the photos can be edited.
EDITABLE = (
    "title",
    "category",
    "summary",
    "body",
    "body_format",
    "author",
    "unit",
    "published_at",
    "tags",
    "gallery_title",
)
KNOWN = {*EDITABLE, "images"}


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


def check_article(data: Any, *, max_photos: int) -> tuple[Submission | None, list[dict[str, str]]]:
    """(submission, []) when the article is acceptable, else (None, field errors)."""
    errors: list[dict[str, str]] = []
    if not isinstance(data, dict):
        return None, [field_error("article", "must be a JSON object")]
    for name in sorted(set(data) - KNOWN):
        errors.append(field_error(name, f"unknown field; known fields: {', '.join(sorted(KNOWN))}"))

    def text(name: str, *, required: bool = False, multiline: bool = False) -> str:
        value = data.get(name)
        if value is None or value == "":
            if required:
                errors.append(field_error(name, "is required"))
            return ""
        if not isinstance(value, str):
            errors.append(field_error(name, "must be a string"))
            return ""
        cleaned = clean_text(value, multiline=multiline)
        if required and not cleaned:
            errors.append(field_error(name, "must not be blank"))
        if len(cleaned) > LIMITS.get(name, 10_000):
            errors.append(
                field_error(
                    name, f"is too long ({len(cleaned)} characters; at most {LIMITS[name]})"
                )
            )
        return cleaned

    title = text("title", required=True)
    category = text("category", required=True)
    summary = text("summary", multiline=True)
    author = text("author")
    unit = text("unit")
    gallery_title = text("gallery_title")
    body_format = data.get("body_format", "html")
    if body_format not in FORMATS:
        errors.append(field_error("body_format", f"must be one of {', '.join(FORMATS)}"))
        body_format = "html"
    body = text("body", required=True, multiline=True)
    published_at = _published_at(data.get("published_at"), errors)
    tags = _tags(data.get("tags"), errors)
    images = _images(data.get("images"), errors, max_photos)
    parts = {image["part"] for image in images}
    for part in cid_parts(body):
        if part not in parts:
            errors.append(
                field_error("body", f"refers to photo cid:{part}, which is not in images")
            )
    if errors:
        return None, errors
    body_html = sanitize(to_html(body, body_format), parts)
    return Submission(
        title=title,
        category=category,
        summary=summary,
        body_source=body,
        body_format=body_format,
        body_html=body_html,
        author=author,
        unit=unit,
        gallery_title=gallery_title,
        published_at=published_at,
        tags=tags,
        images=images,
        slug=slugify(title),
        search_text=search_text(title, summary, clean_text(_strip_tags(body_html), multiline=True)),
    ), []


def check_category(data: Any) -> tuple[tuple[str, str] | None, list[dict[str, str]]]:
    errors: list[dict[str, str]] = []
    if not isinstance(data, dict):
        return None, [field_error("category", "must be a JSON object")]
    slug, name = data.get("slug"), data.get("name")
    if not isinstance(name, str) or not clean_text(name):
        errors.append(field_error("name", "is required"))
    elif len(clean_text(name)) > 100:
        errors.append(field_error("name", "is too long (at most 100 characters)"))
    if slug is None and isinstance(name, str):
        slug = slugify(name)
    if not isinstance(slug, str) or len(slug) > 80 or slugify(slug) != slug:
        errors.append(
            field_error("slug", "must be lowercase ASCII words joined by '-', like tin-hoat-dong")
        )
    if isinstance(slug, str) and slug in RESERVED:
        errors.append(field_error("slug", f"{slug!r} is reserved for the site's own pages"))
    if errors:
        return None, errors
    assert isinstance(slug, str) and isinstance(name, str)
    return (slug, clean_text(name)), []


def _published_at(value: Any, errors: list[dict[str, str]]) -> datetime | None:
    if value is None or value == "":
        return None
    example = "for example 2022-01-12T08:16:46+07:00"
    if not isinstance(value, str):
        errors.append(field_error("published_at", f"must be an ISO 8601 string, {example}"))
        return None
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        errors.append(field_error("published_at", f"is not an ISO 8601 date and time, {example}"))
        return None
    if when.tzinfo is None:
        errors.append(field_error("published_at", f"needs a UTC offset, {example}"))
        return None
    return when


def _tags(value: Any, errors: list[dict[str, str]]) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        errors.append(field_error("tags", "must be a list of strings"))
        return ()
    tags = tuple(dict.fromkeys(clean_text(t) for t in value if clean_text(t)))
    if len(tags) > MAX_TAGS:
        errors.append(field_error("tags", f"at most {MAX_TAGS} tags"))
    if any(len(t) > LIMITS["tag"] for t in tags):
        errors.append(field_error("tags", f"each tag at most {LIMITS['tag']} characters"))
    return tags


def _images(value: Any, errors: list[dict[str, str]], max_photos: int) -> list[dict[str, str]]:
    if value is None:
        return []
    if not isinstance(value, list):
        errors.append(field_error("images", "must be a list"))
        return []
    if len(value) > max_photos:
        errors.append(field_error("images", f"at most {max_photos} photos per article"))
        return []
    images: list[dict[str, str]] = []
    for n, item in enumerate(value):
        where = f"images.{n}"
        if not isinstance(item, dict) or not isinstance(item.get("part"), str):
            errors.append(field_error(where, "must be an object with a string 'part'"))
            continue
        if not PART.fullmatch(item["part"]):
            errors.append(
                field_error(
                    f"{where}.part", "must be 1 to 100 letters, digits, '.', '_' or '-', like anh-1"
                )
            )
            continue
        role = item.get("role", "inline")
        if role not in ROLES:
            errors.append(field_error(f"{where}.role", f"must be one of {', '.join(ROLES)}"))
        caption = item.get("caption", "")
        if not isinstance(caption, str):
            errors.append(field_error(f"{where}.caption", "must be a string"))
            caption = ""
        images.append({"part": item["part"], "caption": clean_text(caption), "role": str(role)})
    seen = [image["part"] for image in images]
    for part in {p for p in seen if seen.count(p) > 1}:
        errors.append(field_error("images", f"part {part!r} is listed twice"))
    return images


def _strip_tags(fragment: str) -> str:
    return re.sub(r"<[^>]+>", " ", fragment)
