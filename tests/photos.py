"""Photos made by the tests themselves (nothing is read from outside the repository)."""

from __future__ import annotations

import io
from typing import Any

import aiohttp
from PIL import Image


def jpeg(
    width: int = 640,
    height: int = 480,
    colour: tuple[int, int, int] = (200, 30, 30),
    *,
    gps: bool = False,
    orientation: int | None = None,
    quality: int = 85,
) -> bytes:
    """A JPEG with a gradient (so it compresses like a photo), optionally with GPS/EXIF."""
    image = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    overlay = Image.new("RGB", (width, height), colour)
    image = Image.blend(image, overlay, 0.5)
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    if gps:
        exif[0x8825] = {1: "N", 2: (20.0, 27.0, 0.0), 3: "E", 4: (106.0, 20.0, 0.0)}
        exif[0x010F] = "PhoneMaker"
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality, exif=exif.tobytes() if len(exif) else b"")
    return out.getvalue()


def png(width: int = 64, height: int = 64) -> bytes:
    out = io.BytesIO()
    Image.new("RGBA", (width, height), (0, 120, 200, 128)).save(out, "PNG")
    return out.getvalue()


def multipart(
    article: dict[str, Any], photos: dict[str, bytes], content_type: str = "image/jpeg"
) -> aiohttp.MultipartWriter:
    writer = aiohttp.MultipartWriter("form-data")
    part = writer.append_json(article)
    part.set_content_disposition("form-data", name="article")
    for name, data in photos.items():
        # (From a file object: aiohttp warns of a large body sent from bytes.)
        part = writer.append(io.BytesIO(data), {"Content-Type": content_type})
        part.set_content_disposition("form-data", name=name, filename=f"{name}.jpg")
    return writer
