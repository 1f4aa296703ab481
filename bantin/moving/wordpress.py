"""WordPress's export (WXR 1.0 to 1.2: RSS 2.0 with the `wp:` elements) read as a stream.

The file is read twice, element by element, never whole: a first pass checks it from end to
end (so a file that is not well-formed, or that declares entities, an "XML bomb", stops the
import before anything is written), counts the posts (for the progress bar) and notes each
attachment's URL (a featured image is an attachment, which may come after its post). The second
pass yields the posts. Each item is dropped from the tree as soon as it is read.

A post's body is converted the way WordPress shows it: `[caption]` shortcodes become figures
with their captions, other shortcodes are dropped (their enclosed text kept, except media
embeds), and blank lines make paragraphs (wpautop).
"""

from __future__ import annotations

import functools
import html
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from lxml import etree

from bantin.moving.engine import DEFAULT_CATEGORY, Item, Photo, category_slug
from shared.redirects import key

Element = Any  # an lxml element (lxml ships no type information)
# One post with its body and comments (WordPress's own are far smaller); one text in it over
# 10 MB libxml2 refuses by itself.
MAX_ITEM_BYTES = 32 * 1024 * 1024
READ = 64 * 1024

SKIPPED_STATUS = {"draft": "draft", "private": "private", "trash": "trash", "pending": "pending",
                  "auto-draft": "draft", "inherit": "revision"}  # fmt: skip


class BadExport(Exception):
    """The file cannot be imported; the message says why and where."""


@dataclass(slots=True)
class Scan:
    site: str = ""
    posts: int = 0
    attachments: dict[str, str] = field(default_factory=dict)  # post id -> URL
    authors: dict[str, str] = field(default_factory=dict)  # login -> display name
    categories: dict[str, str] = field(default_factory=dict)  # nicename -> name


class _Capped:
    """Reads the file for the parser, and refuses to go on when one item grows too large."""

    def __init__(self, fp: IO[bytes]) -> None:
        self.fp = fp
        self.offset = 0
        self.mark = 0  # where the current item began (about: the parser reads ahead)

    def read(self, n: int = READ) -> bytes:
        if self.offset - self.mark > MAX_ITEM_BYTES:
            raise BadExport(
                f"more than {MAX_ITEM_BYTES // (1024 * 1024)} MiB without the end of an item"
                f" (around byte {self.mark}): this is not a WordPress export, or it is damaged"
            )
        data = self.fp.read(min(n, READ))
        self.offset += len(data)
        return data


@functools.lru_cache(maxsize=256)
def _name(tag: str) -> str:
    """`{http://wordpress.org/export/1.2/}post_id` -> `wp:post_id`, whatever the WXR version.
    Remembered: an export has a few dozen tags, asked about once per element."""
    if not tag.startswith("{"):
        return tag
    ns, local = tag[1:].split("}", 1)
    if ns.endswith("/excerpt/"):
        return "excerpt:" + local
    if ns.startswith(("http://wordpress.org/export/", "https://wordpress.org/export/")):
        return "wp:" + local
    if "purl.org/rss/1.0/modules/content" in ns:
        return "content:" + local
    if "purl.org/dc/elements" in ns:
        return "dc:" + local
    return local


# The channel's children that scan() and items() read, and those that come by the thousand
# before the first post (a news site's tags and terms, dropped as they end, so that they are
# never held, nor counted as one giant item); lxml skips every other element in C (a Python
# step per element of a 10^5-post export cost more than the rest of the reading).
_WANTED = (
    "channel", "item", "link", "{*}base_site_url", "{*}author", "{*}category", "{*}tag",
    "{*}term",
)  # fmt: skip


def _elements(path: Path) -> Iterator[tuple[str, Element]]:
    """(name, element) for each channel-level element scan() and items() read, as each one
    ends. libxml2 never loads a DTD nor substitutes an entity here, and a file that declares
    either is refused as soon as its first element starts (an "XML bomb" is made that way)."""
    try:
        with path.open("rb") as fp:
            source = _Capped(fp)
            events = etree.iterparse(
                source,
                events=("start", "end"),
                tag=_WANTED,
                resolve_entities=False,
                load_dtd=False,
                no_network=True,
                remove_comments=True,
                remove_pis=True,
            )
            channel: Element | None = None
            for event, elem in events:
                if channel is None:
                    _refuse_dtd(elem)
                if event == "start":
                    if channel is None and elem.tag == "channel":
                        channel = elem
                    continue
                if channel is not None and elem.getparent() is channel:
                    yield _name(elem.tag), elem
                    # It and the children not asked for before it (the parser may have read
                    # the next ones already: they stay).
                    for done in [*elem.itersiblings(preceding=True), elem]:
                        channel.remove(done)
                    source.mark = source.offset
            if channel is None:
                raise BadExport("no <channel>: this is not a WordPress export (WXR)")
    except etree.XMLSyntaxError as err:
        if "huge text node" in err.msg.lower() or "text node too long" in err.msg.lower():
            raise BadExport(
                f"a text over 10 MB (line {err.lineno}): a post's body or comment too large to"
                " read; remove it from the export, or import the site without it"
            ) from err
        raise BadExport(f"not well-formed XML: {err.msg}") from err
    except OSError as err:
        raise BadExport(f"{path}: {err.strerror or err}") from err


def _refuse_dtd(elem: Element) -> None:
    info = elem.getroottree().docinfo
    if info.doctype or info.internalDTD is not None:
        raise BadExport(
            "the file declares a DTD or entities, which a WordPress export never does (an"
            f" 'XML bomb' is made that way); refused: {info.doctype[:200]}"
        )


def _fields(item: Element, only: frozenset[str] | None = None) -> dict[str, Any]:
    """An item's children by name; categories and post meta gathered in lists. With `only`,
    just those children (a post's body is not copied out of the tree to be counted)."""
    out: dict[str, Any] = {"categories": [], "meta": {}}
    for child in item:
        name = _name(child.tag)
        if only is not None and name not in only:
            continue
        if name == "category":
            out["categories"].append(
                (child.get("domain", ""), child.get("nicename", ""), child.text or "")
            )
        elif name == "wp:postmeta":
            meta = {_name(c.tag): c.text or "" for c in child}
            out["meta"][meta.get("wp:meta_key", "")] = meta.get("wp:meta_value", "")
        else:
            out[name] = child.text or ""
    return out


_SCANNED = frozenset({"wp:post_type", "wp:post_id", "wp:attachment_url"})  # of an item


def scan(path: Path) -> Scan:
    found = Scan()
    for name, elem in _elements(path):
        if name == "wp:base_site_url" or (name == "link" and not found.site):
            found.site = (elem.text or "").strip().rstrip("/")
        elif name == "wp:author":
            f = _fields(elem)
            login = f.get("wp:author_login", "")
            found.authors[login] = f.get("wp:author_display_name", "") or login
        elif name == "wp:category":
            f = _fields(elem)
            found.categories[f.get("wp:category_nicename", "")] = f.get("wp:cat_name", "")
        elif name == "item":
            f = _fields(elem, _SCANNED)
            kind = f.get("wp:post_type", "post")
            if kind == "attachment" and f.get("wp:attachment_url"):
                found.attachments[f.get("wp:post_id", "")] = f["wp:attachment_url"].strip()
            elif kind == "post":
                found.posts += 1
    return found


def items(path: Path, found: Scan) -> Iterator[Item]:
    """The export's posts, as the import engine takes them (other kinds are not counted)."""
    for name, elem in _elements(path):
        if name != "item":
            continue
        f = _fields(elem)
        kind = f.get("wp:post_type", "post")
        if kind != "post":
            if kind not in ("attachment", "nav_menu_item", "revision", "wp_global_styles"):
                yield Item(item=f"{kind}:{f.get('wp:post_id', '')}", skip=f"not a post ({kind})")
            continue
        yield _post(f, found)


def _post(f: dict[str, Any], found: Scan) -> Item:
    post_id = f.get("wp:post_id", "").strip()
    status = f.get("wp:status", "publish")
    if status not in ("publish", "future"):
        return Item(item=post_id, skip=SKIPPED_STATUS.get(status, status))
    categories = [(nice, name) for domain, nice, name in f["categories"] if domain == "category"]
    tags = [html.unescape(name) for domain, _, name in f["categories"] if domain == "post_tag"]
    if categories:
        nice, name = categories[0]
        slug, cat_name = category_slug(nice, found.categories.get(nice) or name)
    else:
        slug, cat_name = DEFAULT_CATEGORY
    body, captions = convert(f.get("content:encoded", ""))
    link = f.get("link", "").strip()
    photos = []
    thumbnail = f["meta"].get("_thumbnail_id", "").strip()
    if thumbnail in found.attachments:
        photos.append(Photo(found.attachments[thumbnail], "cover"))
    creator = f.get("dc:creator", "")
    old = [link, f"/?p={post_id}"]
    guid = f.get("guid", "").strip()
    if guid.startswith(("http://", "https://")):
        old.append(guid)
    return Item(
        item=post_id,
        data={
            "title": html.unescape(f.get("title", "")),
            "category": slug,
            "summary": _text(f.get("excerpt:encoded", "")),
            "body": body,
            "body_format": "html",
            "author": found.authors.get(creator, creator),
            "published_at": _published(f),
            "tags": list(dict.fromkeys(t for t in tags if t.strip()))[:20],
        },
        base_url=link or found.site + "/",
        photos=photos,
        captions=captions,
        old_paths=tuple(dict.fromkeys(k for k in map(key, filter(None, old)) if k and k != "/")),
        category_name=cat_name,
    )


def _published(f: dict[str, Any]) -> str | None:
    raw = f.get("wp:post_date_gmt", "").strip()
    if raw and not raw.startswith("0000"):
        try:
            return datetime.fromisoformat(raw).replace(tzinfo=UTC).isoformat()
        except ValueError:
            pass
    return None  # the engine publishes it now


# --- the body, the way WordPress shows it -----------------------------------------------------

_CAPTION = re.compile(r"\[caption([^\]]*)\](.*?)\[/caption\]", re.S | re.I)
_CAPTION_ATTR = re.compile(r"""caption\s*=\s*(?:"([^"]*)"|'([^']*)')""", re.I)
_IMG = re.compile(r"<img\b[^>]*>", re.I)
_SRC = re.compile(r"""\bsrc\s*=\s*(?:"([^"]*)"|'([^']*)')""", re.I)
_MEDIA = re.compile(r"\[(embed|video|audio|playlist)\b[^\]]*\].*?\[/\1\]", re.S | re.I)
_SHORTCODE = re.compile(r"\[/?[A-Za-z_][\w-]*(?:\s[^\]\[]*)?/?\]")
_BLOCK = re.compile(
    r"^<(?:p|div|h[1-6]|ul|ol|li|blockquote|table|thead|tbody|tr|figure|pre|hr|dl|section"
    r"|article|address|aside|form|header|footer|nav)\b",
    re.I,
)
_TAG = re.compile(r"<[^>]+>")


def convert(content: str) -> tuple[str, dict[str, str]]:
    """A post's `content:encoded` as HTML, and the captions of its photos (URL -> caption)."""
    captions: dict[str, str] = {}

    def figure(match: re.Match[str]) -> str:
        attrs, inner = match.group(1), match.group(2)
        img = _IMG.search(inner)
        if img is None:
            return ""
        given = _CAPTION_ATTR.search(attrs)
        caption = (
            (given.group(1) or given.group(2))
            if given
            else _TAG.sub("", inner[img.end() :]).strip()
        )
        caption = html.unescape(caption).strip()
        src = _SRC.search(img.group(0))
        if src:
            captions[html.unescape(src.group(1) or src.group(2) or "")] = caption
        return f"<figure>{img.group(0)}<figcaption>{html.escape(caption)}</figcaption></figure>"

    text = content.replace("\r\n", "\n").replace("\r", "\n")
    text = _CAPTION.sub(lambda m: "\n\n" + figure(m) + "\n\n", text)
    text = _MEDIA.sub("", text)
    text = _SHORTCODE.sub("", text)
    return autop(text), captions


def autop(text: str) -> str:
    """Paragraphs from blank lines and line breaks from single ones, as WordPress's wpautop;
    what is already a block (a figure, a list, a heading) is left as it is."""
    out = []
    for chunk in re.split(r"\n\s*\n", text):
        chunk = chunk.strip()
        if not chunk:
            continue
        if _BLOCK.match(chunk):
            out.append(chunk)
        else:
            out.append("<p>" + re.sub(r"\s*\n\s*", "<br>\n", chunk) + "</p>")
    return "\n".join(out)


def _text(fragment: str) -> str:
    return html.unescape(_TAG.sub(" ", fragment)).strip()
