"""From articles to what the templates show: cards, pictures, the article page's parts.

Pure functions of their inputs (no I/O), so they are cheap to test and to cache around.
"""

from __future__ import annotations

import html
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from services.publisher.labels import LABELS
from shared.html import best, resolve_photos
from shared.models import Article, Category, Image
from shared.settings import Settings

# Placeholders for the statistics block: cached pages keep them, and each answer gets the live
# numbers substituted, so the block never freezes in the cache.
ONLINE_MARK = "__BANTIN_ONLINE__"
TOTAL_MARK = "__BANTIN_TOTAL__"
MIME = {"webp": "image/webp", "avif": "image/avif"}


def display_time(when: datetime, zone: ZoneInfo) -> str:
    """The Vietnamese way: day/month/year hour:minute, in the site's time zone."""
    return when.astimezone(zone).strftime("%d/%m/%Y %H:%M")


def img(image: Image) -> dict[str, Any] | None:
    fallback = best(image.renditions, max_width=1024)
    if fallback is None:
        return None

    def srcset(fmt: str) -> str:
        return ", ".join(f"{r.path} {r.width}w" for r in image.renditions if r.format == fmt)

    return {
        "src": fallback.path,
        "width": fallback.width,
        "height": fallback.height,
        "caption": image.caption,
        "srcset": srcset(fallback.format),
        "sources": [
            {"type": MIME[f], "srcset": srcset(f)}
            for f in ("avif", "webp")
            if any(r.format == f for r in image.renditions)
        ],
        "placeholder": image.placeholder,
    }


def card(article: Article, zone: ZoneInfo) -> dict[str, Any]:
    assert article.published_at is not None
    thumb = next((img(i) for i in article.images if i.role == "cover" and i.renditions), None)
    return {
        "title": article.title,
        "url": article.path,
        "summary": article.summary,
        "published_display": display_time(article.published_at, zone),
        "published_iso": article.published_at.isoformat(),
        "thumb": thumb,
    }


def figure_html(image: Image, alt: str) -> str:
    """A photo inside the body, as <picture> with the sizes the renditions offer."""
    view = img(image)
    if view is None:
        return ""
    sources = "".join(
        f'<source type="{s["type"]}" srcset="{html.escape(s["srcset"])}"'
        ' sizes="(min-width: 64em) 46rem, 100vw">'
        for s in view["sources"]
    )
    return (
        f'<picture>{sources}<img src="{html.escape(view["src"])}"'
        f' srcset="{html.escape(view["srcset"])}" sizes="(min-width: 64em) 46rem, 100vw"'
        f' width="{view["width"]}" height="{view["height"]}" alt="{html.escape(alt)}"'
        ' loading="lazy" decoding="async"></picture>'
    )


def base_context(
    settings: Settings,
    categories: list[Category],
    *,
    title: str,
    canonical: str,
    description: str = "",
    scope: str = "all",
    scope_name: str = "",
) -> dict[str, Any]:
    site = settings.site_url()
    feed_title = scope_name or settings.site_name
    return {
        "labels": LABELS,
        "site": {
            "name": settings.site_name,
            "url": site,
            "categories": [{"name": c.name, "url": c.path, "slug": c.slug} for c in categories],
            "link_blocks": [],
            "feeds": [
                {
                    "title": f"{feed_title} (RSS)",
                    "type": "application/rss+xml",
                    "url": f"/feeds/{scope}.rss",
                },
                {
                    "title": f"{feed_title} (Atom)",
                    "type": "application/atom+xml",
                    "url": f"/feeds/{scope}.atom",
                },
                {
                    "title": f"{feed_title} (JSON Feed)",
                    "type": "application/feed+json",
                    "url": f"/feeds/{scope}.json",
                },
            ],
        },
        "stats": {"online": ONLINE_MARK, "total": TOTAL_MARK},
        "page": {
            "title": title,
            "canonical_url": site + canonical,
            "description": description,
            "og_type": "website",
            "og_image": None,
            "jsonld": None,
            "noindex": False,
        },
        "current_category": None if scope == "all" else scope,
    }


def article_context(
    settings: Settings, categories: list[Category], article: Article, related: list[Article]
) -> dict[str, Any]:
    zone = settings.zone
    site = settings.site_url()
    assert article.published_at is not None
    ctx = base_context(
        settings,
        categories,
        title=f"{article.title} - {settings.site_name}",
        canonical=article.path,
        description=article.summary,
        scope=article.category.slug,
        scope_name=article.category.name,
    )
    cover_image = next((i for i in article.images if i.role == "cover" and i.renditions), None)
    cover = img(cover_image) if cover_image else None
    gallery = [v for v in (img(i) for i in article.images if i.role == "gallery") if v]
    ctx["page"].update(
        og_type="article",
        og_image=site + cover["src"] if cover else None,
        jsonld=_jsonld(article, site, settings.site_name, cover),
    )
    ctx["article"] = {
        "title": article.title,
        "category": {"name": article.category.name, "url": article.category.path},
        "published_display": display_time(article.published_at, zone),
        "published_iso": article.published_at.isoformat(),
        "updated_iso": article.updated_at.isoformat(),
        "summary": article.summary,
        "body_html": resolve_photos(article.body_html, article.images, figure_html),
        "gallery_title": article.gallery_title,
        "gallery": gallery,
        "author": article.author,
        "unit": article.unit,
        "cover": cover,
    }
    ctx["related"] = [card(r, zone) for r in related]
    return ctx


def _jsonld(
    article: Article, site: str, site_name: str, cover: dict[str, Any] | None
) -> dict[str, Any]:
    assert article.published_at is not None
    doc: dict[str, Any] = {
        "@context": "https://schema.org",
        "@type": "NewsArticle",
        "headline": article.title[:110],
        "description": article.summary,
        "datePublished": article.published_at.isoformat(),
        "dateModified": article.updated_at.isoformat(),
        "mainEntityOfPage": site + article.path,
        "articleSection": article.category.name,
        "inLanguage": "vi",
        "publisher": {"@type": "Organization", "name": site_name},
    }
    if article.author:
        doc["author"] = {"@type": "Person", "name": article.author}
    if cover:
        doc["image"] = [site + cover["src"]]
    return doc
