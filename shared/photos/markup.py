"""Photos as readers see them: the lead photo of an article, the rendition to show, the
view the templates' `picture` macro draws (<picture> with a source per modern format), the
plain <img> feed readers get, and the body's `cid:` references resolved to either.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Collection
from typing import Any

from shared.models import Article, Image, Rendition

MIME = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp", "avif": "image/avif"}
_IMG = re.compile(r"<img\b[^>]*>")
_SRC = re.compile(r'\bsrc="cid:([^"]+)"')
_ALT = re.compile(r'\balt="([^"]*)"')


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
