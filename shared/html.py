"""Article bodies: from what a submitter sends (HTML, Markdown or plain text) to safe HTML, and
from stored HTML to what readers and feed readers get (photos resolved to renditions).

Sanitizing follows an allowlist (nh3, the Rust ammonia library): no scripts, styles, event
handlers, iframes or javascript: links survive, and the only images allowed are this article's
own photos, named `cid:PART` (RFC 2392 content-id URLs) until they are rendered.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Collection

import nh3
from markdown_it import MarkdownIt

from shared.models import Article, Image, Rendition

TAGS = {
    "p",
    "br",
    "strong",
    "b",
    "em",
    "i",
    "u",
    "s",
    "sub",
    "sup",
    "blockquote",
    "ul",
    "ol",
    "li",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "a",
    "img",
    "figure",
    "figcaption",
    "table",
    "thead",
    "tbody",
    "tfoot",
    "tr",
    "th",
    "td",
    "caption",
    "hr",
    "pre",
    "code",
    "span",
    "abbr",
    "cite",
    "q",
}
ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title"},
    "td": {"colspan", "rowspan"},
    "th": {"colspan", "rowspan", "scope"},
    "abbr": {"title"},
    "ol": {"start"},
}
SCHEMES = {"http", "https", "mailto", "tel", "cid"}
CID = re.compile(r"""cid:([A-Za-z0-9][A-Za-z0-9._-]{0,99})""")
_IMG = re.compile(r"<img\b[^>]*>")
_SRC = re.compile(r'\bsrc="cid:([^"]+)"')
_ALT = re.compile(r'\balt="([^"]*)"')
_markdown = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})


def cid_parts(source: str) -> list[str]:
    """The photo parts a body refers to, in order of appearance."""
    return CID.findall(source)


def to_html(source: str, body_format: str) -> str:
    """Turn the submitted body into HTML (not yet sanitized)."""
    if body_format == "markdown":
        return _markdown.render(source)
    if body_format == "text":
        paragraphs = [p.strip() for p in re.split(r"\n\s*\n", source) if p.strip()]
        return "\n".join("<p>" + html.escape(p).replace("\n", "<br>") + "</p>" for p in paragraphs)
    return source


def sanitize(fragment: str, parts: Collection[str]) -> str:
    """Allowlist-clean HTML; images survive only as `cid:` references to `parts`."""

    def keep(tag: str, attribute: str, value: str) -> str | None:
        if tag == "img" and attribute == "src":
            match = CID.fullmatch(value)
            return value if match and match.group(1) in parts else None
        if tag == "a" and attribute == "href" and value.startswith("cid:"):
            return None
        return value

    cleaned = nh3.clean(
        fragment,
        tags=TAGS,
        attributes=ATTRIBUTES,
        url_schemes=SCHEMES,
        attribute_filter=keep,
        link_rel="noopener noreferrer",
        strip_comments=True,
    )
    # An <img> whose src was refused would show as a broken picture: drop it.
    return _IMG.sub(lambda m: m.group(0) if 'src="' in m.group(0) else "", cleaned)


def resolve_photos(
    body_html: str, images: Collection[Image], picture: Callable[[Image, str], str]
) -> str:
    """Replace each `<img src="cid:PART">` with `picture(image, alt)`; an image that has no
    rendition (failed, or not rendered yet) is left out rather than shown broken."""
    by_part = {image.part: image for image in images}

    def replace(match: re.Match[str]) -> str:
        tag = match.group(0)
        src = _SRC.search(tag)
        image = by_part.get(html.unescape(src.group(1))) if src else None
        if image is None or not image.renditions:
            return ""
        alt = _ALT.search(tag)
        return picture(
            image, html.unescape(alt.group(1)) if alt and alt.group(1) else image.caption
        )

    return _IMG.sub(replace, body_html)


def lead_image(article: Article) -> Image | None:
    """The photo that stands for the article in listings, feeds and link previews: its cover,
    else the first photo it shows (most newsrooms send no cover, only photos in the body)."""
    shown = [i for i in article.images if i.renditions]
    return next((i for i in shown if i.role == "cover"), shown[0] if shown else None)


def best(
    renditions: Collection[Rendition],
    *,
    formats: tuple[str, ...] = ("jpeg", "png"),
    max_width: int = 1024,
) -> Rendition | None:
    """The widest rendition in a widely supported format not wider than `max_width`."""
    usable = [r for r in renditions if r.format in formats]
    if not usable:
        return None
    fitting = [r for r in usable if r.width <= max_width]
    return max(fitting, key=lambda r: r.width) if fitting else min(usable, key=lambda r: r.width)


def simple_img(base_url: str) -> Callable[[Image, str], str]:
    """A plain <img> with an absolute URL, for feed readers (which ignore <picture>)."""

    def render(image: Image, alt: str) -> str:
        chosen = best(image.renditions)
        if chosen is None:
            return ""
        return (
            f'<img src="{html.escape(base_url + chosen.path)}" width="{chosen.width}"'
            f' height="{chosen.height}" alt="{html.escape(alt)}">'
        )

    return render
