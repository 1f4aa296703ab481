"""Article bodies: from what a submitter sends (HTML, Markdown or plain text) to safe HTML, and
the photos in it named `cid:PART` until shared.photos.markup resolves them to renditions.

Sanitizing follows an allowlist (nh3, the Rust ammonia library): no scripts, styles, event
handlers, iframes or javascript: links survive, and the only images allowed are this article's
own photos, named `cid:PART` (RFC 2392 content-id URLs) until they are rendered.
"""

from __future__ import annotations

import html
import re
from collections.abc import Collection

import nh3
from markdown_it import MarkdownIt

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
