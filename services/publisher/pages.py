"""From articles to what the templates show: cards, pictures, the article page's parts.

Pure functions of their inputs (no I/O), so they are cheap to test and to cache around.
"""

from __future__ import annotations

import functools
import html
import re
from bisect import bisect_left
from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from functools import partial
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

from services.publisher.labels import LABELS
from shared.feeds.formats import CONTENT_TYPES
from shared.models import Article, Image
from shared.photos.markup import img, lead_image, resolve_photos
from shared.settings import Settings
from shared.site import Chrome, to_json
from shared.text import fold, search_text

# Placeholders for the statistics block: cached pages keep them, and each answer gets the live
# numbers substituted, so the block never freezes in the cache.
FEED_NAMES = {"rss": "RSS", "atom": "Atom", "json": "JSON Feed"}  # as <link> titles say them
ONLINE_MARK = "__BANTIN_ONLINE__"
TOTAL_MARK = "__BANTIN_TOTAL__"

# A word: letters and digits, with any combining marks (text may reach us decomposed).
WORD = re.compile(r"(?:[^\W_]|[\u0300-\u036f])+")
_TAG = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"\s+")
SNIPPET_WORDS = 36  # words in a search result's snippet
SNIPPET_SOURCE = 12_000  # characters of summary and body a snippet is chosen from (CPU bound)
# Vietnamese function words (folded): they say nothing about what an article is about, so
# related news does not match on them.
STOP_WORDS = frozenset(
    {
        *("va", "cua", "cac", "nhung", "la", "co", "trong", "cho", "voi", "duoc", "da", "tai"),
        *("ve", "nay", "mot", "den", "theo", "tu", "khi", "thi", "de", "o", "ra", "vao"),
        *("nhu", "cung", "con", "se", "dang", "bi", "boi", "hay", "hoac", "ma", "nen", "neu"),
    }
)
RELATED_TERMS = 40  # lexemes and pairs in a related-news query

# Folding one word at a time is the cost of highlighting; a text repeats its syllables (an
# article has a few hundred different ones), so each is folded once per process.
_fold_word = functools.lru_cache(maxsize=65_536)(fold)


def machine_time(when: datetime) -> str:
    """For <time datetime> and JSON-LD: whole seconds (HTML allows at most three digits of a
    second's fraction; PostgreSQL keeps six)."""
    return when.isoformat(timespec="seconds")


def display_time(when: datetime, zone: ZoneInfo) -> str:
    """The Vietnamese way: day/month/year hour:minute, in the site's time zone."""
    return when.astimezone(zone).strftime("%d/%m/%Y %H:%M")


def card(article: Article, zone: ZoneInfo) -> dict[str, Any]:
    assert article.published_at is not None
    thumb = img(picked) if (picked := lead_image(article)) else None
    return {
        "title": article.title,
        "url": article.path,
        "summary": article.summary,
        "published_display": display_time(article.published_at, zone),
        "published_iso": machine_time(article.published_at),
        "thumb": thumb,
    }


def base_context(
    settings: Settings,
    chrome: Chrome,
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
            "categories": [
                {"name": c.name, "url": c.path, "slug": c.slug} for c in chrome.categories
            ],
            "link_blocks": to_json(chrome.link_blocks),
            "feeds": [
                {
                    "title": f"{feed_title} ({name})",
                    "type": CONTENT_TYPES[fmt].partition(";")[0],
                    "url": f"/feeds/{scope}.{fmt}",
                }
                for fmt, name in FEED_NAMES.items()
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
    settings: Settings,
    chrome: Chrome,
    article: Article,
    related: list[Article],
    *,
    picture: Callable[[dict[str, Any]], str],
) -> dict[str, Any]:
    """`picture` renders an img() view as <picture> markup (the templates' macro) for the
    photos inside the body."""
    zone = settings.zone
    site = settings.site_url()
    assert article.published_at is not None
    ctx = base_context(
        settings,
        chrome,
        title=f"{article.title} - {settings.site_name}",
        canonical=article.path,
        description=article.summary,
        scope=article.category.slug,
        scope_name=article.category.name,
    )
    cover_image = next((i for i in article.images if i.role == "cover" and i.renditions), None)
    cover = img(cover_image) if cover_image else None
    gallery = [v for v in (img(i) for i in article.images if i.role == "gallery") if v]
    # Link previews and search engines want a picture: the cover, else the first photo shown.
    shown = img(picked) if (picked := lead_image(article)) else None
    ctx["page"].update(
        og_type="article",
        og_image=site + shown["src"] if shown else None,
        jsonld=_jsonld(article, site, settings.site_name, shown),
    )
    ctx["article"] = {
        "title": article.title,
        "category": {"name": article.category.name, "url": article.category.path},
        "published_display": display_time(article.published_at, zone),
        "published_iso": machine_time(article.published_at),
        "updated_iso": machine_time(article.updated_at),
        "summary": article.summary,
        "body_html": resolve_photos(
            article.body_html, article.images, partial(_body_picture, picture)
        ),
        "gallery_title": article.gallery_title,
        "gallery": gallery,
        "author": article.author,
        "unit": article.unit,
        "cover": cover,
    }
    ctx["related"] = [card(r, zone) for r in related]
    return ctx


def _body_picture(picture: Callable[[dict[str, Any]], str], image: Image, alt: str) -> str:
    view = img(image)
    return "" if view is None else picture({**view, "caption": alt})


def _jsonld(
    article: Article, site: str, site_name: str, cover: dict[str, Any] | None
) -> dict[str, Any]:
    assert article.published_at is not None
    doc: dict[str, Any] = {
        "@context": "https://schema.org",
        "@type": "NewsArticle",
        "headline": article.title[:110],
        "description": article.summary,
        "datePublished": machine_time(article.published_at),
        "dateModified": machine_time(article.updated_at),
        "mainEntityOfPage": site + article.path,
        "articleSection": article.category.name,
        "inLanguage": "vi",
        "publisher": {"@type": "Organization", "name": site_name},
    }
    if article.author:
        doc["author"] = {"@type": "Person", "name": article.author}
    elif article.unit:
        doc["author"] = {"@type": "Organization", "name": article.unit}
    if cover:
        doc["image"] = [site + cover["src"]]
    return doc


# --- search and related news ----------------------------------------------------------------


def query_terms(q: str) -> frozenset[str]:
    """The folded words of a reader's query: what PostgreSQL matches (on the folded text), and
    what the highlighting looks for in the original text."""
    return frozenset(WORD.findall(search_text(q)))


def plain_text(body_html: str) -> str:
    """The text of a sanitized body (tags dropped, entities decoded, spaces collapsed)."""
    return _SPACE.sub(" ", html.unescape(_TAG.sub(" ", body_html))).strip()


def highlight(text: str, terms: Collection[str], *, words: int | None = None) -> str:
    """`text` as HTML with <mark> around every word whose folded form is one of `terms`
    (folded words); everything else escaped. Matching is on folded words, and the marks go
    around the original spelling: "Ủy viên", "Uỷ viên" and "uy vien" all match "uy vien".
    Neighbouring matches separated by spaces only share one mark.

    With `words`, only the passage of that many words with the most different matches
    (earliest among equals) is kept, with "…" where text was left out."""
    tokens = list(WORD.finditer(text))
    matched = [i for i, m in enumerate(tokens) if _fold_word(m.group()) in terms]
    first, last = 0, len(tokens)
    if words is not None and len(tokens) > words:
        first = _best_window(tokens, matched, words)
        last = first + words
    is_match = set(matched)
    out: list[str] = []
    if words is not None and first > 0:
        out.append("… ")
        pos = tokens[first].start()
    else:
        pos = 0
    end = tokens[last - 1].end() if words is not None and last < len(tokens) else len(text)
    open_mark = False
    for i in range(first, last):
        m = tokens[i]
        gap = text[pos : m.start()]
        hit = i in is_match
        if open_mark and not (hit and gap.isspace()):
            out.append("</mark>")
            open_mark = False
        out.append(html.escape(gap))
        if hit and not open_mark:
            out.append("<mark>")
            open_mark = True
        out.append(html.escape(m.group()))
        pos = m.end()
    if open_mark:
        out.append("</mark>")
    out.append(html.escape(text[pos:end]))
    if end < len(text):
        out.append(" …")
    return "".join(out)


def _best_window(tokens: Sequence[re.Match[str]], matched: list[int], words: int) -> int:
    """The first word of the `words`-long passage with the most different matched words; the
    passage starts a few words before its first match, so the match reads in context."""
    best_start, best_count = 0, 0
    for h in matched[:500]:
        start = max(0, min(h - 3, len(tokens) - words))
        inside = matched[bisect_left(matched, start) : bisect_left(matched, start + words)]
        count = len({_fold_word(tokens[i].group()) for i in inside})
        if count > best_count:
            best_start, best_count = start, count
    return best_start


def search_card(article: Article, zone: ZoneInfo, terms: Collection[str]) -> dict[str, Any]:
    """A result: the card, with the title and a snippet of the text highlighted."""
    view = card(article, zone)
    # (HTML is longer than its text: four times the text's budget is plenty, and bounded.)
    body = plain_text(article.body_html[: 4 * SNIPPET_SOURCE])
    source = (article.summary + " " + body)[:SNIPPET_SOURCE]
    view["title_html"] = highlight(article.title, terms)
    view["snippet_html"] = highlight(source, terms, words=SNIPPET_WORDS)
    return view


def related_tsquery(title: str) -> str | None:
    """A tsquery (for `to_tsquery('simple', ...)`) that finds articles sharing the title's
    words: any word but the function words, and adjacent pairs (Vietnamese words are mostly
    two syllables: "kiểm sát", "hội nghị"), which rank an article that has the pair above one
    that only has both syllables somewhere. None when nothing is left."""
    folded = WORD.findall(search_text(title))
    terms: dict[str, None] = {}
    for word in folded:
        if word not in STOP_WORDS:
            terms[f"'{word}'"] = None
    for a, b in pairwise(folded):
        if a not in STOP_WORDS and b not in STOP_WORDS:
            terms[f"('{a}' <-> '{b}')"] = None
    chosen = list(terms)[:RELATED_TERMS]
    return " | ".join(chosen) or None
