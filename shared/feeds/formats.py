"""Render RSS 2.0, Atom and JSON Feed 1.1 documents from already-prepared data.

This module is deliberately pure: it takes frozen dataclasses that the caller
has filled from the database (already sorted newest first, already limited to
the page size) and returns the bytes of one feed document.  Nothing here does
I/O, caches across calls or keeps global state, so the cost of a call depends
only on the number of entries passed in, and the same input always gives the
same bytes (which lets the publisher compare and ETag the output).

RSS and Atom are built with python-feedgen 1.0.0 where it does the job.  Where
it does not, the gap is filled through feedgen's own extension mechanism
(``register_extension``) rather than by editing the serialised XML; see the
notes on ``_BantinFeedExt`` and ``_BantinEntryExt`` for what feedgen gets wrong.
JSON Feed is written with the ``json`` module, since feedgen does not know it.

Every string that reaches a document goes through :func:`scrub` first.  lxml
refuses (with ``ValueError``) to serialise characters that XML 1.0 does not
allow, and readers choke on them in JSON as well, so a single control
character in one article title would otherwise take the whole feed down.

Person names: every format shows a single byline, ``"<author> - <unit>"``
(e.g. ``"Tố Uyên - Văn phòng VKSND tỉnh"``).  Atom and JSON Feed persons only
have a name (plus uri/email/avatar), RSS's ``dc:creator`` is a single string,
and readers display only the name, so folding the unit into the name is the
only way the unit is seen at all; keeping it consistent across the three
formats means a subscriber sees the same credit whichever feed they chose.
"""

import html
import json
import re
import threading
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from feedgen.ext.base import BaseEntryExtension, BaseExtension
from feedgen.feed import FeedGenerator
from lxml import etree

__all__ = [
    "CONTENT_TYPES",
    "FORMATS",
    "FeedEntry",
    "FeedImage",
    "FeedMeta",
    "render_feed",
    "scrub",
]

FORMATS = ("rss", "atom", "json")
CONTENT_TYPES = {
    "rss": "application/rss+xml; charset=utf-8",
    "atom": "application/atom+xml; charset=utf-8",
    "json": "application/feed+json; charset=utf-8",
}

GENERATOR = "bantin"

ATOM_NS = "http://www.w3.org/2005/Atom"
# JSON Feed 1.1 section "JSON Feed": version is this exact URL.
JSONFEED_VERSION = "https://jsonfeed.org/version/1.1"


@dataclass(frozen=True, slots=True)
class FeedImage:
    """The lead image of an article, as a feed enclosure.

    ``length`` is optional because the size in bytes is often not known when
    the feed is rendered; RSS still gets an attribute (``0``), see below.
    """

    url: str  # absolute
    mime: str  # "image/jpeg"
    width: int
    height: int
    length: int | None = None  # bytes; RSS enclosure requires the attribute, 0 if unknown


@dataclass(frozen=True, slots=True)
class FeedEntry:
    """One article, ready to be rendered in any format.

    ``id`` must never change across edits: readers use it (RSS guid, Atom id,
    JSON Feed id) to decide whether an item is new, so a changing id shows an
    edited article to every subscriber a second time.
    """

    id: str  # stable id, e.g. "urn:uuid:…"; never changes across edits
    url: str  # absolute permalink of the article page
    title: str
    summary: str  # plain text
    content_html: str  # full HTML body with absolute URLs
    published: datetime  # aware
    updated: datetime  # aware
    author: str  # e.g. "Tố Uyên"
    unit: str = ""  # e.g. "Văn phòng VKSND tỉnh"; folded into the byline
    category: str | None = None  # category display name
    image: FeedImage | None = None


@dataclass(frozen=True, slots=True)
class FeedMeta:
    """Feed-level data: what the feed is, where it lives, how to page it."""

    title: str
    description: str
    home_url: str  # absolute URL of the HTML page for this feed's scope
    self_url: str  # absolute URL of this very feed document
    feed_id: str  # stable id of the feed (e.g. "urn:bantin:feed:all")
    updated: datetime  # aware
    language: str = "vi"
    hub_url: str | None = None  # WebSub hub
    next_url: str | None = None  # RFC 5005 paged feed: older entries
    prev_url: str | None = None  # RFC 5005: newer entries
    first_url: str | None = None
    timezone: str = "Asia/Ho_Chi_Minh"  # RSS dates are written with this zone's offset
    icon_url: str | None = None


# --------------------------------------------------------------------------
# Text hygiene
# --------------------------------------------------------------------------

# XML 1.0 section 2.2, production [2] Char:
#   #x9 | #xA | #xD | [#x20-#xD7FF] | [#xE000-#xFFFD] | [#x10000-#x10FFFF]
# Everything outside it is matched here: C0 controls other than TAB/LF/CR,
# surrogate code points (a Python str can hold them, UTF-8 cannot encode them)
# and the two BMP non-characters U+FFFE/U+FFFF.
_NOT_XML_CHAR = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
# A high surrogate immediately followed by a low one is a split astral
# character (e.g. text that went through UTF-16 with "surrogatepass"), not
# garbage: it is joined back so an emoji survives instead of vanishing.
_SURROGATE_PAIR = re.compile("[\ud800-\udbff][\udc00-\udfff]")


def _join_pair(match: re.Match[str]) -> str:
    pair = match.group()
    return chr(0x10000 + ((ord(pair[0]) - 0xD800) << 10) + (ord(pair[1]) - 0xDC00))


def scrub(text: str) -> str:
    """Return ``text`` without the characters that break feed readers, in NFC.

    Removed: characters that are not XML 1.0 ``Char`` (C0 controls except
    ``\\t``, ``\\n``, ``\\r``; lone surrogates; U+FFFE and U+FFFF).  lxml
    refuses to serialise them and strict XML parsers reject the document, and
    a lone surrogate cannot even be encoded as UTF-8.  A properly ordered
    surrogate pair is joined into the character it encodes rather than dropped.

    The result is NFC because Vietnamese text arrives both precomposed and
    decomposed (e.g. from macOS or Windows IMEs); readers compare, search and
    deduplicate titles byte-wise, and NFC is what W3C Charmod asks for on the
    web.  The common clean case costs one regex scan and one normalisation
    check.
    """
    if _NOT_XML_CHAR.search(text) is not None:
        text = _SURROGATE_PAIR.sub(_join_pair, text)
        text = _NOT_XML_CHAR.sub("", text)
    if not unicodedata.is_normalized("NFC", text):
        text = unicodedata.normalize("NFC", text)
    return text


# --------------------------------------------------------------------------
# Validation and normalisation of the input
# --------------------------------------------------------------------------


def _site_zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"FeedMeta.timezone: unknown time zone {name!r}") from exc


def _site_time(value: datetime, zone: tzinfo, what: str) -> datetime:
    """Return ``value`` as wall time in the site zone, whole seconds.

    Naive datetimes are refused (feedgen's wording) instead of being guessed:
    a guess is off by seven hours for either UTC or local callers, and RSS,
    Atom and JSON Feed all require an explicit offset.

    Fractions are dropped so that the same instant reads identically in all
    three formats: RFC 822 (RSS) has no fractional seconds.  If the zone has a
    sub-minute offset (only historical LMT dates do), UTC is used instead,
    because neither RFC 822 nor RFC 3339 can write such an offset.
    """
    if not isinstance(value, datetime):
        raise ValueError(f"{what}: expected a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what}: Datetime object has no timezone info")
    local = value.astimezone(zone).replace(microsecond=0)
    offset = local.utcoffset() or timedelta(0)
    if offset.seconds % 60 or offset.microseconds:
        local = local.astimezone(UTC)
    return local


def _absolute_url(value: str, what: str) -> str:
    """Scrub ``value`` and insist it is an absolute http(s) URL.

    Every URL in a feed is resolved by the reader against a base it may not
    know (JSON Feed has none at all), so a relative URL is a bug upstream.
    """
    url = scrub(value).strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{what}: expected an absolute http(s) URL, got {value!r}")
    return url


def _optional_url(value: str | None, what: str) -> str | None:
    return None if value is None else _absolute_url(value, what)


def _required_text(value: str, what: str) -> str:
    text = scrub(value).strip()
    if not text:
        raise ValueError(f"{what}: must not be empty")
    return text


def _byline(author: str, unit: str) -> str:
    """``"Tố Uyên - Văn phòng VKSND tỉnh"``; see the module docstring for why."""
    return " - ".join(part for part in (scrub(author).strip(), scrub(unit).strip()) if part)


def _paging_links(channel: FeedMeta) -> list[tuple[str, str]]:
    """(rel, href) for WebSub and RFC 5005, in a stable order."""
    links = [
        # WebSub section 4: the hub is advertised with rel="hub".
        ("hub", channel.hub_url),
        # RFC 5005 section 3 (paged feeds): "first", "previous", "next".
        ("first", channel.first_url),
        ("previous", channel.prev_url),
        ("next", channel.next_url),
    ]
    return [(rel, href) for rel, href in links if href]


def _prepare_channel(meta: FeedMeta, zone: tzinfo) -> FeedMeta:
    """``meta`` after scrubbing, validation and time zone conversion."""
    return replace(
        meta,
        title=_required_text(meta.title, "FeedMeta.title"),
        description=scrub(meta.description).strip(),
        home_url=_absolute_url(meta.home_url, "FeedMeta.home_url"),
        self_url=_absolute_url(meta.self_url, "FeedMeta.self_url"),
        feed_id=_required_text(meta.feed_id, "FeedMeta.feed_id"),
        updated=_site_time(meta.updated, zone, "FeedMeta.updated"),
        language=_required_text(meta.language, "FeedMeta.language"),
        hub_url=_optional_url(meta.hub_url, "FeedMeta.hub_url"),
        next_url=_optional_url(meta.next_url, "FeedMeta.next_url"),
        prev_url=_optional_url(meta.prev_url, "FeedMeta.prev_url"),
        first_url=_optional_url(meta.first_url, "FeedMeta.first_url"),
        icon_url=_optional_url(meta.icon_url, "FeedMeta.icon_url"),
    )


def _prepare_item(entry: FeedEntry, index: int, zone: tzinfo) -> FeedEntry:
    """``entry`` after scrubbing, validation and time zone conversion; its ``author`` is the
    byline, the unit folded in."""
    where = f"entries[{index}]"
    image = None
    if entry.image is not None:
        img = entry.image
        if img.length is not None and img.length < 0:
            raise ValueError(f"{where}.image.length: must not be negative")
        image = FeedImage(
            url=_absolute_url(img.url, f"{where}.image.url"),
            mime=_required_text(img.mime, f"{where}.image.mime"),
            width=int(img.width),
            height=int(img.height),
            length=img.length,
        )
    category = scrub(entry.category).strip() if entry.category is not None else ""
    return replace(
        entry,
        id=_required_text(entry.id, f"{where}.id"),
        url=_absolute_url(entry.url, f"{where}.url"),
        # An untitled item is blank in every reader's list; refuse it loudly
        # rather than publish it, the caller prepares titles.
        title=_required_text(entry.title, f"{where}.title"),
        summary=scrub(entry.summary).strip(),
        content_html=scrub(entry.content_html),
        published=_site_time(entry.published, zone, f"{where}.published"),
        updated=_site_time(entry.updated, zone, f"{where}.updated"),
        author=_byline(entry.author, entry.unit),
        unit="",
        category=category or None,
        image=image,
    )


# --------------------------------------------------------------------------
# feedgen extensions: what feedgen 1.0.0 cannot express by itself
# --------------------------------------------------------------------------


class _BantinFeedExt(BaseExtension):
    """Channel-level ``atom:link`` elements in RSS.

    feedgen's RSS writer copies only the first ``rel="self"`` link into the
    channel and silently drops every other link (hub, next, previous, first),
    so they are added here.  ``extend_rss`` runs after the channel's own
    elements and before the items are appended.
    """

    def __init__(self) -> None:
        self.rss_links: list[tuple[str, str]] = []

    def extend_rss(self, feed: Any) -> Any:
        channel = feed[0]
        for rel, href in self.rss_links:
            # Atom in RSS (RSS Advisory Board best practices), WebSub section 4
            # (rel="hub"), RFC 5005 section 3 (rel="first"/"previous"/"next").
            etree.SubElement(channel, f"{{{ATOM_NS}}}link", href=href, rel=rel)
        return feed


class _BantinEntryExt(BaseEntryExtension):
    """Entry-level ``atom:link`` elements in Atom.

    feedgen 1.0.0's ``FeedEntry.atom_entry`` shadows the link dict with the
    new element, so ``rel``, ``type``, ``hreflang``, ``title`` and ``length``
    are read from the (empty) element and never written: every entry link
    comes out as a bare ``<link href>``.  An image enclosure would then be a
    second rel="alternate" link, which RFC 4287 section 4.1.2 forbids.  The
    Atom entry links are therefore written here instead of via ``link()``.
    """

    def __init__(self) -> None:
        self.atom_links: list[dict[str, str]] = []

    def extend_atom(self, entry: Any) -> Any:
        for attrs in self.atom_links:
            etree.SubElement(entry, "link", attrib=attrs)
        return entry


# feedgen.util.formatRFC2822 switches the process-wide locale to "C" and back
# around strftime.  Two threads doing that at once can restore each other's
# "C" and leave the process in the wrong locale (or format a date in it), so
# RSS serialisation, the only caller, is done one thread at a time.
_FEEDGEN_LOCALE_LOCK = threading.Lock()


# --------------------------------------------------------------------------
# RSS 2.0
# --------------------------------------------------------------------------


def _render_rss(channel: FeedMeta, items: Sequence[FeedEntry]) -> bytes:
    """RSS 2.0 (https://www.rssboard.org/rss-specification) via feedgen."""
    fg = FeedGenerator()
    # RSS 2.0 "Extending RSS": namespaced elements.  dc:creator because RSS
    # <author> must be an e-mail address; media:content (Media RSS) because
    # <enclosure> cannot carry width/height.  Neither is wanted in Atom.
    fg.load_extension("dc", atom=False, rss=True)
    fg.load_extension("media", atom=False, rss=True)
    fg.register_extension("bantin", _BantinFeedExt, _BantinEntryExt, atom=False, rss=True)

    # RSS 2.0 required channel elements: title, link, description.  An empty
    # description would make feedgen refuse the feed, so the title stands in.
    fg.title(channel.title)
    fg.description(channel.description or channel.title)
    # atom:link rel="self" (RSS Advisory Board best practice); the type must
    # be the RSS media type here, not Atom's.
    fg.link(href=channel.self_url, rel="self", type="application/rss+xml")
    # feedgen uses the *last* link added as RSS <link>: the HTML page goes last.
    fg.link(href=channel.home_url, rel="alternate", type="text/html")
    fg.language(channel.language)  # RSS 2.0 <language>
    fg.lastBuildDate(channel.updated)  # RSS 2.0 <lastBuildDate>, RFC 822
    fg.generator(GENERATOR)  # RSS 2.0 <generator>
    if channel.icon_url:
        # RSS 2.0 <image>: url + title + link (feedgen fills the latter two).
        fg.image(url=channel.icon_url)
    fg.bantin.rss_links = _paging_links(channel)

    for item in items:
        fe = fg.add_entry(order="append")  # caller's order is the feed's order
        # RSS 2.0 <guid isPermaLink="false">: our id is a URN, not a URL.
        fe.guid(item.id, permalink=False)
        fe.title(item.title)
        fe.link(href=item.url)  # RSS 2.0 <link>
        if item.summary:
            # RSS 2.0 <description> holds (entity-encoded) HTML and readers
            # render it as such, so the plain-text summary is HTML-escaped
            # first; otherwise "a < b" or a literal "<script>" in a summary
            # would be parsed as markup by the reader.
            fe.summary(html.escape(item.summary, quote=False))
        # content:encoded (RSS 1.0 Content module).  Escaped text, not CDATA:
        # both mean the same to an XML parser, but lxml < 5.3 raises on "]]>"
        # inside CDATA (newer versions split the section), so escaping is the
        # choice that cannot fail whatever lxml is installed.  Without a
        # summary feedgen puts the HTML into <description> instead (RSS 2.0
        # allows entity-encoded HTML there).
        fe.content(item.content_html)
        # RSS 2.0 <pubDate>, RFC 822 date-time; feedgen formats it with the
        # datetime's own offset, which _site_time set to the site zone (+0700).
        fe.pubDate(item.published)
        if item.category:
            fe.category(term=item.category)  # RSS 2.0 <category>
        if item.author:
            fe.dc.dc_creator(item.author)  # Dublin Core dc:creator
        if item.image is not None:
            img = item.image
            # RSS 2.0 <enclosure url length type>: all three are required, so
            # an unknown length is written as 0 (RSS Best Practices Profile).
            fe.enclosure(url=img.url, length=str(img.length or 0), type=img.mime)
            media: dict[str, Any] = {
                "url": img.url,
                "type": img.mime,
                "medium": "image",
                "width": str(img.width),
                "height": str(img.height),
                # group=None puts media:content directly in the item; the
                # feedgen default wraps it in a needless <media:group>.
                "group": None,
            }
            if img.length:
                media["fileSize"] = str(img.length)
            fe.media.content(media)  # Media RSS <media:content>

    with _FEEDGEN_LOCALE_LOCK:
        data: bytes = fg.rss_str(pretty=False, encoding="UTF-8", xml_declaration=True)
    return data


# --------------------------------------------------------------------------
# Atom (RFC 4287)
# --------------------------------------------------------------------------


def _render_atom(channel: FeedMeta, items: Sequence[FeedEntry]) -> bytes:
    """Atom 1.0 (RFC 4287) via feedgen, entry links via ``_BantinEntryExt``."""
    fg = FeedGenerator()
    fg.register_extension("bantin", _BantinFeedExt, _BantinEntryExt, atom=True, rss=False)

    fg.id(channel.feed_id)  # RFC 4287 4.2.6 atom:id
    fg.title(channel.title)  # RFC 4287 4.2.14 atom:title
    fg.updated(channel.updated)  # RFC 4287 4.2.15 atom:updated
    if channel.description:
        fg.subtitle(channel.description)  # RFC 4287 4.2.12 atom:subtitle
    fg.language(channel.language)  # xml:lang on atom:feed (RFC 4287 2)
    # RFC 4287 4.2.7: alternate (the HTML page) and self (this document).
    fg.link(href=channel.home_url, rel="alternate", type="text/html")
    fg.link(href=channel.self_url, rel="self", type="application/atom+xml")
    for rel, href in _paging_links(channel):
        # WebSub 4 rel="hub"; RFC 5005 3 rel="first"/"previous"/"next".
        fg.link(href=href, rel=rel)
    fg.generator(GENERATOR)  # RFC 4287 4.2.4 atom:generator
    if channel.icon_url:
        fg.icon(channel.icon_url)  # RFC 4287 4.2.5 atom:icon
    if any(not item.author for item in items):
        # RFC 4287 4.1.2: an entry without atom:author inherits the feed's;
        # with neither the document is invalid, so the site is the author.
        fg.author(name=channel.title)

    for item in items:
        fe = fg.add_entry(order="append")  # caller's order is the feed's order
        fe.id(item.id)  # RFC 4287 4.2.6
        fe.title(item.title)  # RFC 4287 4.2.14, type="text"
        fe.updated(item.updated)  # RFC 4287 4.2.15
        fe.published(item.published)  # RFC 4287 4.2.9
        if item.author:
            fe.author(name=item.author)  # RFC 4287 4.2.1 / 3.2.1
        if item.summary:
            fe.summary(item.summary)  # RFC 4287 4.2.13, type="text"
        # RFC 4287 4.1.3: type="html" means escaped HTML in the element text.
        fe.content(item.content_html, type="html")
        if item.category:
            # RFC 4287 4.2.2: term is required, label is for display.
            fe.category(term=item.category, label=item.category)
        links = [{"rel": "alternate", "type": "text/html", "href": item.url}]
        if item.image is not None:
            img = item.image
            # RFC 4287 4.2.7.2 rel="enclosure"; 4.2.7.6 length is advisory,
            # so it is left out rather than guessed when unknown.
            enclosure = {"rel": "enclosure", "type": img.mime, "href": img.url}
            if img.length:
                enclosure["length"] = str(img.length)
            links.append(enclosure)
        fe.bantin.atom_links = links

    data: bytes = fg.atom_str(pretty=False, encoding="UTF-8", xml_declaration=True)
    return data


# --------------------------------------------------------------------------
# JSON Feed 1.1
# --------------------------------------------------------------------------


def _render_json(channel: FeedMeta, items: Sequence[FeedEntry]) -> bytes:
    """JSON Feed 1.1 (https://jsonfeed.org/version/1.1) with the json module."""
    feed: dict[str, Any] = {
        "version": JSONFEED_VERSION,  # required
        "title": channel.title,  # required
        "home_page_url": channel.home_url,
        "feed_url": channel.self_url,
    }
    if channel.description:
        feed["description"] = channel.description
    if channel.icon_url:
        feed["icon"] = channel.icon_url
    feed["language"] = channel.language  # 1.1: RFC 5646 language tag
    if channel.hub_url:
        # "hubs": array of {type, url}; WebSub is the type readers implement.
        feed["hubs"] = [{"type": "WebSub", "url": channel.hub_url}]
    if channel.next_url:
        # "next_url": JSON Feed's pagination; it has no previous/first.
        feed["next_url"] = channel.next_url
    feed["items"] = [_json_item(item, channel.language) for item in items]  # required
    text = json.dumps(feed, ensure_ascii=False, separators=(",", ":"))
    return text.encode("utf-8")


def _json_item(item: FeedEntry, language: str) -> Mapping[str, Any]:
    out: dict[str, Any] = {
        "id": item.id,  # required, string
        "url": item.url,
        "title": item.title,
        "content_html": item.content_html,  # content_html or content_text required
    }
    if item.summary:
        out["summary"] = item.summary
    if item.image is not None:
        out["image"] = item.image.url
    # date_published / date_modified: RFC 3339.
    out["date_published"] = item.published.isoformat()
    out["date_modified"] = item.updated.isoformat()
    if item.author:
        out["authors"] = [{"name": item.author}]  # 1.1 "authors" array
    out["language"] = language
    if item.category:
        out["tags"] = [item.category]
    return out


# --------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------

_RENDERERS = {"rss": _render_rss, "atom": _render_atom, "json": _render_json}


def render_feed(fmt: str, meta: FeedMeta, entries: Sequence[FeedEntry]) -> bytes:
    """Render one feed document as UTF-8 bytes (``fmt`` is one of ``FORMATS``).

    Entries are written in the order given; the caller sorts newest first and
    limits the page.  All text is passed through :func:`scrub`, every
    datetime must be aware (naive ones raise ``ValueError``), and dates are
    written in ``meta.timezone`` so RSS shows the +0700 readers expect.

    Raises ``ValueError`` for an unknown format or invalid input (naive
    datetime, relative URL, empty title/id), never for hostile text.
    """
    renderer = _RENDERERS.get(fmt)
    if renderer is None:
        raise ValueError(f"unknown feed format {fmt!r}; expected one of {FORMATS}")
    zone = _site_zone(meta.timezone)
    channel = _prepare_channel(meta, zone)
    items = [_prepare_item(entry, index, zone) for index, entry in enumerate(entries)]
    return renderer(channel, items)
