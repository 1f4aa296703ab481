"""Old addresses that answer 301: the key one is stored and looked up under, in one place for
the importers that write them and the publisher that answers them."""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

MAX_LENGTH = 2000


def keys(address: str) -> list[str]:
    """The keys an old address (a URL, or a path with its query) may be stored under, the most
    precise first: its path (percent-decoded, NFC, without a trailing slash) with its query
    sorted ("/?p=123", "/index.php?id=5&option=com_content"), then the path alone (a link that
    gained "?utm_source=..." still finds its page). Empty when it is no usable address."""
    parts = urlsplit(address.strip())
    path = unicodedata.normalize("NFC", unquote(parts.path or "/"))
    if not path.startswith("/") or len(path) > MAX_LENGTH:
        return []
    path = path.rstrip("/") or "/"
    query = parts.query
    if query and not _PLAIN_QUERY.fullmatch(query):
        query = urlencode(sorted(parse_qsl(query, keep_blank_values=True)))
    return [f"{path}?{query}", path] if query else [path]


# A query of one name and value that quoting leaves as they are ("p=123", WordPress's own):
# what urlencode(sorted(parse_qsl(...))) gives back unchanged, at a tenth of its cost (an
# import asks for two keys per post).
_PLAIN_QUERY = re.compile(r"[A-Za-z0-9_.~-]+=[A-Za-z0-9_.~-]*")


def key(address: str) -> str | None:
    """The key to store an old address under."""
    found = keys(address)
    return found[0] if found else None
