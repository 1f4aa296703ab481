"""Photo renditions: small, upright, sRGB, metadata-free copies of an uploaded original.

`render()` is a pure function of the original's bytes. It makes the capped original (longest
side at most 2560) and each smaller width the way libvips' `thumbnail` does (the benchmark
reference), each straight from a decode of the original, never from another size: a JPEG is
decoded at 1/8, 1/4 or 1/2 scale when the size is at least 16, 8 or 4 times smaller (one decode
per scale; see `_decode_plan`), then reduced with Lanczos-3, vertically then horizontally. Each
size gets the EXIF orientation and 8-bit sRGB, and is encoded as JPEG (PNG when the photo has
transparency), WebP and, when Pillow has it, AVIF. Files go to the content-addressed
`MediaStore`, so running it again on the same original gives the same paths and writes nothing.

Safety, in the order it is applied:
- the format is sniffed from the bytes and must be in `shared.imaging.ALLOWED`; only that one
  Pillow parser ever sees the file (no EPS/Ghostscript, SVG, PSD, TIFF...);
- `shared.imaging.probe` checks the pixel count from the header before anything is decoded
  (decompression bombs are refused there, with the size in the message);
- truncated or corrupt data is refused (`ImageFile.LOAD_TRUNCATED_IMAGES` stays off);
- a JPEG is decoded at a smaller scale than libvips would use rather than decode more than
  DECODE_PIXELS at once, which bounds the memory a 50 MP photo needs;
- `time_limit` is checked between steps (decode, each resize, each encode); one step itself
  cannot be interrupted from Python, so the Celery task that calls this must also have a hard
  `time_limit` (which kills the worker child) a little above the soft one here;
- animated GIF/WebP/PNG: only the first frame is decoded.

All failures that are the file's fault raise `shared.imaging.ImageRefused` subclasses whose
`str()` is the reason to show the submitter.

Encoder settings follow libvips' defaults (the benchmark reference), so that sizes are
comparable: JPEG quality 75 with 4:2:0 chroma and Huffman optimisation off, WebP quality 75
effort 4, PNG zlib level 6, and AVIF quality 50 at libaom speed 5 (vips' effort 4; libheif and
libavif map quality to the same quantizer; libavif's default tuning, "iq", gives vips' bytes
within 1%) up to 1024 wide.
Larger AVIFs use speed 6 at quality 47: a fifth of the CPU time for about the same bytes and
SSIM (see AVIF_OPTIONS).
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from PIL import Image, ImageCms

from shared.imaging import (
    AVIF_SUPPORTED,
    NAMES,
    ImageRefused,
    Undecodable,
    open_image,
    probe,
)
from shared.media import MediaStore

WIDTHS = (320, 640, 1024, 1600)
MAX_SIDE = 2560  # the capped original: longest side at most this many pixels
# At most this many pixels are decoded at once (4 bytes each in Pillow): a JPEG is decoded at
# a smaller scale than libvips would pick rather than pass it (peak RSS at 50 MP).
DECODE_PIXELS = 16_000_000

JPEG_OPTIONS: dict[str, Any] = {"quality": 75, "subsampling": "4:2:0", "optimize": False}
PNG_OPTIONS: dict[str, Any] = {"compress_level": 6}
WEBP_OPTIONS: dict[str, Any] = {"quality": 75, "method": 4}
# AVIF, by the rendition's pixel count: vips' defaults (quality 50, effort 4 = libaom speed 5)
# up to about 1024 x 1269; larger ones use speed 6, a fifth of the CPU time, which spends more
# bytes at the same quantizer, so their quality is lowered to 47 (quantizer 33 instead of 32):
# within 3% of vips' bytes and at SSIM 0.976-0.984 against vips' outputs on the benchmark photo.
# (At 1024 x 768, speed 6 gives either 10% more bytes at quality 50 or SSIM 0.966 at 47.)
# One encoder thread: a worker runs one photo per CPU, and threads only add CPU time.
AVIF_OPTIONS: tuple[tuple[int, dict[str, Any]], ...] = (
    (1_300_000, {"quality": 50, "speed": 5, "max_threads": 1}),
    (2**62, {"quality": 47, "speed": 6, "max_threads": 1}),
)

_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, KeyError)
# The transposition for each EXIF orientation, as ImageOps.exif_transpose does it.
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


class TooSlow(ImageRefused):
    """Rendering this photo went past its time limit."""


@dataclass(frozen=True, slots=True)
class RenditionOut:
    path: str  # URL path from MediaStore.put_public, /media/ab/<sha256>.<ext>
    width: int
    height: int
    format: str  # jpeg | png | webp | avif
    bytes: int


@dataclass(frozen=True, slots=True)
class Rendered:
    width: int  # the original's upright size
    height: int
    placeholder: str  # average colour, "#rrggbb", to show while the photo loads
    renditions: list[RenditionOut]  # smallest first; for each size jpeg|png, webp, avif


def output_formats(transparent: bool) -> tuple[str, ...]:
    return ("png" if transparent else "jpeg", "webp") + (("avif",) if AVIF_SUPPORTED else ())


def render(
    original: Path, store: MediaStore, *, max_pixels: int, time_limit: float = 60.0
) -> Rendered:
    """Make and store the renditions of `original`; see the module docstring."""
    clock = _Clock(time_limit)
    info = probe(original, max_pixels=max_pixels)
    orient = info.orientation
    # The capped original, in upright orientation, then each smaller width.
    scale = min(1.0, MAX_SIDE / max(info.upright_width, info.upright_height))
    capped = (max(1, round(info.upright_width * scale)), max(1, round(info.upright_height * scale)))
    sizes = [capped] + [
        (w, max(1, round(info.upright_height * w / info.upright_width)))
        for w in sorted(WIDTHS, reverse=True)
        if w < capped[0]
    ]
    renditions: list[RenditionOut] = []
    smallest: Image.Image | None = None
    # One decode per shrink-on-load factor (JPEG; other formats decode once at full size),
    # largest first; every size is resized from its decode, never from another size. The
    # decode is freed before the sizes made from it are encoded.
    for factor, group in _decode_plan(info.format, (info.width, info.height), sizes, orient):
        source, icc = _decode(original, info.format, factor)
        clock.check("decoding")
        made: list[Image.Image] = []
        for size in group:
            im = _resize(source, (size[1], size[0]) if orient >= 5 else size)
            if orient in _TRANSPOSE:
                im = im.transpose(_TRANSPOSE[orient])
            im = _to_srgb(im, icc)
            im.info = {}  # no EXIF, XMP, ICC, comment or anything else reaches the outputs
            made.append(im)
            clock.check(f"resizing to {size[0]} x {size[1]}")
        del source
        for im in made:
            for fmt in output_formats(im.mode == "RGBA"):
                data = encode(im, fmt)
                path = store.put_public(data, fmt)
                renditions.append(RenditionOut(path, *im.size, fmt, len(data)))
                clock.check(f"encoding {im.width} x {im.height} {NAMES[fmt]}")
            smallest = im
        del made
    assert smallest is not None
    renditions.sort(key=lambda r: r.width)  # stable: formats keep their order per size
    return Rendered(info.upright_width, info.upright_height, placeholder(smallest), renditions)


def _decode_plan(
    fmt: str, stored: tuple[int, int], sizes: list[tuple[int, int]], orient: int
) -> list[tuple[int, list[tuple[int, int]]]]:
    """[(JPEG shrink-on-load factor, the upright sizes made from that decode)], largest
    decode first. The factor is the one libvips' `thumbnail` picks (8, 4 or 2 when the photo is
    at least 16, 8 or 4 times the size, so that at least a factor of two is left to the
    Lanczos filter), raised while the decoded pixels would pass DECODE_PIXELS."""
    plan: dict[int, list[tuple[int, int]]] = {}
    width, height = stored
    for size in sizes:
        w, h = (size[1], size[0]) if orient >= 5 else size
        if fmt != "jpeg":
            factor = 1
        else:
            shrink = min(width / w, height / h)
            factor = next((f for f in (8, 4, 2) if shrink >= 2 * f), 1)
            while (
                factor < 8
                and (width // factor) * (height // factor) > DECODE_PIXELS
                and width // (factor * 2) >= w
                and height // (factor * 2) >= h
            ):
                factor *= 2
        plan.setdefault(factor, []).append(size)
    return sorted(plan.items())


def _decode(original: Path, fmt: str, factor: int) -> tuple[Image.Image, bytes | None]:
    """The first frame (stored orientation, a mode from `_resizable`; JPEG decoded at
    1/`factor` scale) and its ICC profile."""
    with original.open("rb") as fp, open_image(fp, fmt) as im:
        if fmt == "jpeg" and factor > 1:
            # Shrink-on-load: libjpeg decodes at 1/2, 1/4 or 1/8 scale.
            im.draft("RGB", (im.width // factor, im.height // factor))
        try:
            im.load()
        except _DECODE_ERRORS as e:
            raise _undecodable(NAMES[fmt], e) from None
        icc = im.info.get("icc_profile")
        base = _resizable(im)
        if base is im:
            base = im.copy()  # a plain image, independent of the file
        return base, icc if isinstance(icc, bytes) and icc else None


def encode(im: Image.Image, fmt: str) -> bytes:
    """The encoded bytes of `im` (mode L, RGB or RGBA, empty `info`) with no metadata."""
    if fmt == "avif":
        options = next(o for most, o in AVIF_OPTIONS if im.width * im.height <= most)
    else:
        options = {"jpeg": JPEG_OPTIONS, "png": PNG_OPTIONS, "webp": WEBP_OPTIONS}[fmt]
    out = io.BytesIO()
    im.save(out, format=fmt.upper(), **options)
    return out.getvalue()


def placeholder(im: Image.Image) -> str:
    """The average colour of `im` as "#rrggbb"; transparent parts count as white."""
    pixel = im.convert("RGBA").resize((1, 1), Image.Resampling.BOX).getpixel((0, 0))
    assert isinstance(pixel, tuple)
    r, g, b, a = (int(v) for v in pixel)
    r, g, b = (round((c * a + 255 * (255 - a)) / 255) for c in (r, g, b))
    return f"#{r:02x}{g:02x}{b:02x}"


class _Clock:
    def __init__(self, limit: float) -> None:
        self.limit = limit
        self.deadline = time.monotonic() + limit

    def check(self, step: str) -> None:
        if time.monotonic() > self.deadline:
            raise TooSlow(f"rendering took longer than {self.limit:g} s (stopped after {step})")


def _undecodable(name: str, error: Exception) -> Undecodable:
    message = str(error) or type(error).__name__
    if "truncated" in message:
        return Undecodable(f"truncated {name}: {message}")
    return Undecodable(f"broken {name}: {message}")


def _resizable(im: Image.Image) -> Image.Image:
    """`im` in a mode that resizes well: L, RGB, RGBA (alpha kept only where some pixel is
    not opaque) or CMYK (left for the ICC conversion). 16-bit is scaled down, not clipped."""
    mode = im.mode
    if mode in ("P", "PA"):
        if mode == "P" and "transparency" in im.info:
            im.apply_transparency()  # into the palette (changes `im`, which is ours)
        mode = "RGBA" if im.palette is not None and im.palette.mode == "RGBA" else "RGB"
        im = im.convert("RGBA" if im.mode == "PA" else mode)
    elif mode in ("LA", "La", "RGBa") or (mode in ("L", "RGB") and "transparency" in im.info):
        im = im.convert("RGBA")
    elif mode.startswith("I;16") or mode == "I":
        im = im.convert("I")
        high = im.getextrema()[1]
        if mode != "I" or (isinstance(high, int) and high > 255):
            im = im.point(lambda v: v / 256)
        im = im.convert("L")
    elif mode in ("1", "F"):
        im = im.convert("L")
    elif mode not in ("L", "RGB", "RGBA", "CMYK"):
        im = im.convert("RGB")
    if im.mode == "RGBA" and _opaque(im):
        im = im.convert("RGB")
    return im


def _opaque(im: Image.Image) -> bool:
    low = im.getchannel("A").getextrema()[0]
    return isinstance(low, int) and low == 255


def _resize(im: Image.Image, size: tuple[int, int]) -> Image.Image:
    """`im` resized to `size` as libvips' `thumbnail` does it: Lanczos-3, the vertical pass
    first, then the horizontal one (each rounds to 8 bits, so the order shows), with a box
    pre-shrink by whole factors only where more than twice that is left (libvips' `gap` 2)."""
    if im.size == size:
        return im
    if im.height != size[1]:
        im = im.resize((im.width, size[1]), Image.Resampling.LANCZOS, reducing_gap=2.0)
    if im.width != size[0]:
        im = im.resize(size, Image.Resampling.LANCZOS, reducing_gap=2.0)
    return im


_SRGB = ImageCms.createProfile("sRGB")


def _to_srgb(im: Image.Image, icc: bytes | None) -> Image.Image:
    """`im` converted from its embedded profile to sRGB; 8-bit L, RGB or RGBA."""
    transform = _transform(icc, "RGB" if im.mode == "RGBA" else im.mode) if icc else None
    if transform is not None:
        if im.mode == "RGBA":
            rgb = transform.apply(im.convert("RGB"))
            rgb.putalpha(im.getchannel("A"))
            im = rgb
        else:
            grey = im.mode == "L"
            im = transform.apply(im)  # always to RGB; a grey profile gives R = G = B
            if grey:
                im = im.convert("L")
    if im.mode == "CMYK":
        im = im.convert("RGB")  # no profile: Pillow's plain formula
    return im


@lru_cache(maxsize=16)
def _transform(icc: bytes, mode: str) -> ImageCms.ImageCmsTransform | None:
    """A cached transform from the profile `icc` to sRGB for images of `mode`; None when the
    profile does not fit the mode or cannot be read (then it is ignored, as browsers do).
    An sRGB profile is converted too: that costs ~50 ms at 2560 x 1920, and a profile that
    only calls itself sRGB is not trusted."""
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        space = source.profile.xcolor_space.strip()
        if {"RGB": "RGB", "CMYK": "CMYK", "L": "GRAY"}.get(mode) != space:
            return None
        return ImageCms.buildTransform(
            source,
            _SRGB,
            mode,
            "RGB",
            renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC,
        )
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return None
