"""What a photo file is, decided cheaply and before any pixel is decoded.

The ingest service calls this on every upload, so nothing here decodes image data:

- `sniff(head)` names the format from the first bytes (magic numbers only: the Content-Type and
  the file name a client sends are never trusted);
- `accept(head)` does the same, but refuses anything outside `ALLOWED` with a message that says
  what the file looks like ("not an image: looks like HTML", "SVG is not accepted", ...);
- `probe(path, max_pixels=...)` reads the header with Pillow (lazily: no `load()`), checks the
  pixel count against the limit (an AVIF: every image inside it, see `_check_heif_items`), and
  gives the upright size the renditions will have.

Every refusal is an `ImageRefused` whose `str()` is an English sentence for the submitter.

Pillow's own decompression-bomb check (`Image.MAX_IMAGE_PIXELS`) is a process-wide setting that
fires inside `Image.open`, before a caller could apply its own limit, with a message that does
not give the size. Rather than changing that global (which every thread shares), `open_image`
runs only the one Pillow parser that matches the sniffed format, exactly as
`Image.open(fp, formats=[that one])` would minus the global check, and `probe` applies
BANTIN_MAX_PIXELS itself. Pillow's default limit stays in force for any other Pillow user.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from PIL import (
    ExifTags,
    GifImagePlugin,
    Image,
    ImageFile,
    JpegImagePlugin,
    PngImagePlugin,
    WebPImagePlugin,
    features,
)

# How many leading bytes `sniff`/`accept` look at; pass at least this many (or the whole file
# when it is shorter). 512 is enough for an ISO-BMFF `ftyp` box and an XML prologue before <svg>.
HEAD_BYTES = 512

AVIF_SUPPORTED = bool(features.check("avif"))
ALLOWED: tuple[str, ...] = ("jpeg", "png", "webp", "gif") + (("avif",) if AVIF_SUPPORTED else ())

# Which Pillow formats (`Image.format`) belong to each family. A JPEG with a Multi-Picture
# index (many phone photos) is opened by the JPEG parser as "MPO".
PIL_FORMATS: dict[str, frozenset[str]] = {
    "jpeg": frozenset({"JPEG", "MPO"}),
    "png": frozenset({"PNG"}),
    "webp": frozenset({"WEBP"}),
    "gif": frozenset({"GIF"}),
    "avif": frozenset({"AVIF"}),
}

_Opener = Callable[[IO[bytes], str], ImageFile.ImageFile]
_OPENERS: dict[str, _Opener] = {
    "jpeg": JpegImagePlugin.jpeg_factory,
    "png": PngImagePlugin.PngImageFile,
    "webp": WebPImagePlugin.WebPImageFile,
    "gif": GifImagePlugin.GifImageFile,
}
if AVIF_SUPPORTED:
    from PIL import AvifImagePlugin

    _OPENERS["avif"] = AvifImagePlugin.AvifImageFile

# What Pillow's parsers raise on a file they cannot read: RuntimeError from the AVIF plugin
# ("Failed to decode image: ..."), DecompressionBombError (its own global check, which a WebP
# header or a GIF frame can still reach) for sizes far beyond any cap.
_PARSE_ERRORS = (SyntaxError, ValueError, OSError, EOFError, IndexError, TypeError, KeyError,
                 RuntimeError, struct.error, Image.DecompressionBombError)  # fmt: skip

# An AVIF's images together (see _check_heif_items), and the largest `meta` box read.
HEIF_ITEMS_FACTOR = 5
HEIF_ITEMS_SLACK = 1_000_000
HEIF_META_MAX = 4 * 1024 * 1024
HEIF_TOP_BOXES = 1000  # where the meta box must be found (it comes second, after ftyp)

_AVIF_BRANDS = frozenset({b"avif", b"avis"})
_HEIC_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs"})
# How formats are named in messages.
NAMES = {"jpeg": "JPEG", "png": "PNG", "webp": "WebP", "gif": "GIF", "avif": "AVIF"}


class ImageRefused(Exception):
    """A file bantin will not publish as a photo; `str(error)` tells the submitter why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __str__(self) -> str:
        return self.reason


class NotAccepted(ImageRefused):
    """Not an image, or an image format outside `ALLOWED` (HEIC, SVG, TIFF, PDF, ...)."""


class Undecodable(ImageRefused):
    """Claims to be an allowed format, but Pillow cannot read it (corrupt, truncated, forged)."""


class TooManyPixels(ImageRefused):
    """The header announces more pixels than BANTIN_MAX_PIXELS allows; nothing was decoded."""

    def __init__(self, width: int, height: int, max_pixels: int) -> None:
        super().__init__(
            f"photo is {width} x {height} pixels ({width * height / 1e6:,.1f} megapixels);"
            f" the limit is {max_pixels / 1e6:,.1f} megapixels"
        )
        self.args = (width, height, max_pixels)  # so that pickling gives the same error back
        self.width, self.height, self.max_pixels = width, height, max_pixels


@dataclass(frozen=True, slots=True)
class Probe:
    """What the header says. `width`/`height` are as stored; `upright_*` after the EXIF
    orientation is applied (5 to 8 turn the photo by a quarter)."""

    format: str  # one of ALLOWED
    width: int
    height: int
    upright_width: int
    upright_height: int
    orientation: int  # EXIF orientation, 1 to 8 (1 when absent or invalid)
    animated: bool  # more than one frame (only the first is rendered); frames are not
    # counted: Pillow would read through a whole GIF to count them (1.7 M frames: seconds)


def sniff(head: bytes) -> str | None:
    """The format these first bytes announce: jpeg, png, webp, gif, avif or heic, else None."""
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return _heif_brand(head)


def _heif_brand(head: bytes) -> str | None:
    """avif or heic from an ISO-BMFF `ftyp` box: the major brand first, then the compatible
    brands (a generic `mif1`/`msf1` file says what it holds there)."""
    if len(head) < 16 or head[4:8] != b"ftyp":
        return None
    size = struct.unpack(">I", head[:4])[0]
    if size < 16:  # 0 ("to end of file") and 1 (64-bit size) do not occur for ftyp
        return None
    major = head[8:12]
    end = min(size, len(head))
    compatible = {head[i : i + 4] for i in range(16, end - 3, 4)}
    for brands in ({major}, compatible):
        if brands & _AVIF_BRANDS:
            return "avif"
        if brands & _HEIC_BRANDS:
            return "heic"
    return None


def accept(head: bytes) -> str:
    """The allowed format of a file starting with `head`, or `NotAccepted` saying what it is."""
    fmt = sniff(head)
    if fmt in ALLOWED:
        return fmt
    raise NotAccepted(describe(head))


def describe(head: bytes) -> str:
    """Why a file starting with `head` is not accepted, in words for the submitter."""
    fmt = sniff(head)
    formats = ", ".join(NAMES[f] for f in ALLOWED)
    send = f"send the photo as {formats}"
    if fmt in ALLOWED:
        return f"{NAMES[fmt]} is accepted"
    if fmt == "heic":
        # The libvips of the pyvips wheel has no HEVC decoder (tests/test_imaging.py checks
        # that premise on a whole HEIC file): iPhones' default format is refused, saying how.
        return (
            "HEIC/HEIF photos are not accepted (this server cannot decode HEVC): export the"
            f" photo as JPEG and send that, or {send} (on an iPhone, Settings > Camera >"
            " Formats > Most Compatible takes JPEG photos from then on)"
        )
    if fmt == "avif":
        return f"AVIF is not supported on this server: {send}"
    if not head:
        return "not an image: the file is empty"
    text = head.lstrip(b"\xef\xbb\xbf\x00 \t\r\n").lower()
    for magic, what in _OTHER_FORMATS:
        if head.startswith(magic):
            return what.format(send=send)
    if text.startswith((b"<svg", b"<?xml", b"<!doctype svg", b"<!--")) and b"<svg" in text:
        return f"SVG is not accepted: {send}"
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<body", b"<!--", b"<meta")):
        return "not an image: looks like HTML (perhaps an error page saved as a photo)"
    if text.startswith(b"<?xml"):
        return "not an image: looks like XML"
    if text.startswith((b"{", b"[")):
        return "not an image: looks like JSON"
    if head[4:8] == b"ftyp":
        brand = head[8:12].decode("ascii", "replace")
        return f"not an image: looks like a video or other ISO media file (brand {brand!r})"
    if _looks_like_text(head):
        return "not an image: looks like text"
    return f"not an image: unrecognised format (starts with {head[:8].hex(' ')})"


_OTHER_FORMATS: tuple[tuple[bytes, str], ...] = (
    (b"%PDF-", "not an image: looks like a PDF document; {send}"),
    (b"%!PS", "PostScript/EPS is not accepted: {send}"),
    (b"\xc5\xd0\xd3\xc6", "PostScript/EPS is not accepted: {send}"),
    (b"8BPS", "PSD (Photoshop) is not accepted: {send}"),
    (b"II*\x00", "TIFF (or camera RAW) is not accepted: {send}"),
    (b"MM\x00*", "TIFF (or camera RAW) is not accepted: {send}"),
    (b"BM", "BMP is not accepted: {send}"),
    (b"\xff\x0a", "JPEG XL is not accepted: {send}"),
    (b"\x00\x00\x00\x0cJXL \r\n\x87\n", "JPEG XL is not accepted: {send}"),
    (b"\x00\x00\x01\x00", "ICO is not accepted: {send}"),
    (b"PK\x03\x04", "not an image: looks like a ZIP archive (or an Office document)"),
    (b"\x1f\x8b", "not an image: looks like a gzip archive"),
    (b"Rar!", "not an image: looks like a RAR archive"),
    (b"7z\xbc\xaf", "not an image: looks like a 7-Zip archive"),
)


def _looks_like_text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        # The cut at HEAD_BYTES may fall inside a character.
        try:
            text = head[:-3].decode("utf-8")
        except UnicodeDecodeError:
            return False
    return all(c.isprintable() or c in "\t\r\n" for c in text)


def open_image(fp: IO[bytes], fmt: str) -> ImageFile.ImageFile:
    """Parse the header of `fp` with Pillow's parser for `fmt` only (one of ALLOWED), lazily:
    no pixel is decoded until `load()`. The caller keeps `fp` open while it uses the image.

    No other Pillow plugin ever sees the bytes (so no EPS/Ghostscript, SVG, PSD...), and
    Pillow's global decompression-bomb check is left to `probe` (see the module docstring).
    Raises `Undecodable` when the parser refuses the header or finds another format."""
    if fmt not in ALLOWED:
        raise NotAccepted(f"{fmt} is not an accepted photo format")
    fp.seek(0)
    try:
        im = _OPENERS[fmt](fp, getattr(fp, "name", ""))
    except _PARSE_ERRORS as e:
        raise Undecodable(f"not a valid {NAMES[fmt]} file: {e}") from None
    if im.format not in PIL_FORMATS[fmt]:
        im.close()
        raise Undecodable(f"not a valid {NAMES[fmt]} file: it reads as {im.format}")
    return im


def _check_heif_items(fp: IO[bytes], size: tuple[int, int], max_pixels: int) -> None:
    """Refuse an AVIF whose other images would make libheif decode far more than the photo
    the header announces: libheif decodes, besides the primary image, its alpha and depth
    images and, for a grid, every tile, each with a size of its own (`ispe`). Each image in the
    file must be within the pixel cap, and all of them together within
    HEIF_ITEMS_FACTOR times the photo (a grid's tiles, an alpha image and its own tiles are
    about four) plus HEIF_ITEMS_SLACK (thumbnails, gain maps of small photos)."""
    extents = _heif_extents(fp)
    for width, height in extents:
        if width * height > max_pixels:
            raise TooManyPixels(width, height, max_pixels)
    total = sum(width * height for width, height in extents)
    if total > HEIF_ITEMS_FACTOR * size[0] * size[1] + HEIF_ITEMS_SLACK:
        raise Undecodable(
            f"not a valid AVIF file: its {len(extents)} images add up to {total:,} pixels,"
            f" far more than its {size[0]} x {size[1]} photo needs"
        )


def _heif_extents(fp: IO[bytes]) -> list[tuple[int, int]]:
    """The size (`ispe`) of every image item of an ISO-BMFF file, from its `meta` box."""
    fp.seek(0)
    for _ in range(HEIF_TOP_BOXES):
        kind, payload_size = _box_header(fp)
        if kind is None:
            return []
        if kind == b"meta":
            if payload_size is None or payload_size > HEIF_META_MAX:
                raise Undecodable("not a valid AVIF file: its metadata box is too large")
            meta = fp.read(payload_size)
            break
        if payload_size is None:
            return []
        fp.seek(payload_size, 1)
    else:
        raise Undecodable(f"not a valid AVIF file: no metadata in its first {HEIF_TOP_BOXES} boxes")
    iprp = _child_box(meta, b"iprp", 4)  # meta is a full box: version and flags first
    ipco = _child_box(iprp, b"ipco", 0) if iprp is not None else None
    extents: list[tuple[int, int]] = []
    for kind, payload in _boxes(ipco or b"", 0):
        if kind == b"ispe" and len(payload) >= 12:
            extents.append(struct.unpack(">II", payload[4:12]))
    return extents


def _box_header(fp: IO[bytes]) -> tuple[bytes | None, int | None]:
    """(type, payload size) of the box at `fp`'s position (None: to the end of the file), or
    (None, None) at the end."""
    head = fp.read(8)
    if len(head) < 8:
        return None, None
    size, kind = struct.unpack(">I4s", head)
    if size == 1:
        large = fp.read(8)
        if len(large) < 8:
            return None, None
        size = struct.unpack(">Q", large)[0]
        if size < 16:
            raise Undecodable(f"not a valid AVIF file: a box of {size} bytes")
        return kind, size - 16
    if size == 0:
        return kind, None
    if size < 8:
        raise Undecodable(f"not a valid AVIF file: a box of {size} bytes")
    return kind, size - 8


def _boxes(data: bytes, start: int) -> Iterator[tuple[bytes, bytes]]:
    """(type, payload) of each box in `data` from `start`; stops at a malformed one."""
    at = start
    while at + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[at : at + 8])
        head = 8
        if size == 1 and at + 16 <= len(data):
            size, head = struct.unpack(">Q", data[at + 8 : at + 16])[0], 16
        elif size == 0:
            size = len(data) - at
        if size < head or at + size > len(data):
            return
        yield kind, data[at + head : at + size]
        at += size


def _child_box(data: bytes, kind: bytes, start: int) -> bytes | None:
    return next((payload for k, payload in _boxes(data, start) if k == kind), None)


def orientation(im: Image.Image) -> int:
    """The EXIF orientation (1 to 8), read from the header's EXIF only: not from XMP, which
    Pillow's `getexif()` falls back to but browsers and libvips ignore (and a PNG's own
    `getexif()` would decode the pixels to look for an eXIf chunk after them)."""
    data = im.info.get("exif")
    if not isinstance(data, bytes) or not data:
        return 1
    try:
        exif = Image.Exif()
        exif.load(data)
        value = exif.get(ExifTags.Base.Orientation, 1)
    except _PARSE_ERRORS:
        return 1  # unreadable EXIF: shown as stored, as browsers do
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def upright(size: tuple[int, int], orient: int) -> tuple[int, int]:
    """A stored size as it looks once the orientation is applied."""
    width, height = size
    return (height, width) if orient >= 5 else (width, height)


def probe(path: Path, *, max_pixels: int) -> Probe:
    """Check an uploaded file from its header alone: `NotAccepted` for a format outside
    ALLOWED, `Undecodable` for a header Pillow cannot parse, `TooManyPixels` over the limit."""
    with path.open("rb") as fp:
        fmt = accept(fp.read(HEAD_BYTES))
        with open_image(fp, fmt) as im:
            width, height = im.size
            if width < 1 or height < 1:
                raise Undecodable(f"not a valid {NAMES[fmt]} file: it is {width} x {height}")
            if width * height > max_pixels:
                raise TooManyPixels(width, height, max_pixels)
            orient = orientation(im)
            try:
                animated = bool(getattr(im, "is_animated", False))
            except _PARSE_ERRORS as e:
                raise Undecodable(f"not a valid {NAMES[fmt]} file: {e}") from None
        if fmt == "avif":
            _check_heif_items(fp, (width, height), max_pixels)
    upright_width, upright_height = upright((width, height), orient)
    return Probe(fmt, width, height, upright_width, upright_height, orient, animated)
