"""Renditions for readers. Only the store's public/ folder is reachable: originals keep their
EXIF and GPS data and are never served. Names are content hashes, so a file never changes:
it can be cached forever."""

from __future__ import annotations

import re

from aiohttp import web

from shared.photos.store import EXTENSIONS
from shared.web import media_key

NAME = re.compile(r"[0-9a-f]{2}/[0-9a-f]{64}\.(jpg|png|webp|avif|gif)")
TYPES = {ext: f"image/{'jpeg' if fmt == 'jpeg' else fmt}" for fmt, ext in EXTENSIONS.items()}
HEADERS = {
    "Cache-Control": "public, max-age=31536000, immutable",
    "X-Content-Type-Options": "nosniff",
}


async def serve(request: web.Request) -> web.StreamResponse:
    name = request.match_info["path"]
    match = NAME.fullmatch(name)
    if match is None:
        raise web.HTTPNotFound(text="No such photo.")
    path = request.app[media_key].public / name
    # FileResponse stats the file in a thread (404 when missing), streams it with sendfile and
    # answers conditional and range requests.
    return web.FileResponse(path, headers={**HEADERS, "Content-Type": TYPES[match.group(1)]})
