"""Photo renditions: small, upright, sRGB, metadata-free copies of an uploaded original.

`render()` is a pure function of the original's bytes. It renders with libvips (pyvips): the
capped original (longest side at most 2560) and each smaller width are each made straight from
the file, never from another size: `thumbnail_source` for JPEG, PNG and WebP (a JPEG is decoded
at 1/2, 1/4 or 1/8 scale where the size allows it: shrink-on-load), the GIF or AVIF loader and
`thumbnail_image` for the others; the rest is streamed through libvips' Lanczos-3 reduction a
few lines at a time, so a 50 MP photo is never held decoded. Each size gets the EXIF
orientation and 8-bit sRGB, and is encoded as JPEG (PNG when the photo has transparency), WebP
and, when this libvips can, AVIF. Files go to the content-addressed `MediaStore`, so running
it again on the same original gives the same paths and writes nothing.

Safety, in the order it is applied:
- the format is sniffed from the bytes and must be in `shared.photos.probe.ALLOWED`;
  `shared.photos.probe.probe` then reads the header with Pillow and checks the pixel count before
  anything is decoded (decompression bombs are refused there, with the size in the message;
  an AVIF's alpha images and grid tiles count too);
- in libvips every loader is blocked but those of ALLOWED (so no SVG, TIFF, UltraHDR, CSV,
  matrix or raw loader can run whatever the bytes are); files are read from a `Source`, never
  by name (a name is parsed for "[options]");
- libvips' header must agree with the probe: the loader is the sniffed format's and the size
  the one checked against the cap (libheif and Pillow's libavif can pick different images from
  one AVIF; an AVIF's embedded thumbnail item is never used; a GIF frame smaller than its screen
  is put back on the screen);
- truncated or corrupt data is refused (`fail_on="truncated"`);
- the orientation is the one the probe read from the EXIF (the size in the article's JSON comes
  from it too), applied after resizing; an AVIF is turned upright by libheif itself;
- `time_limit` is checked between steps (each size, each encode); one step itself cannot be
  interrupted from Python, so the Celery task that calls this must also have a hard
  `time_limit` (which kills the worker child) a little above the soft one here;
- animated GIF/WebP/PNG/AVIF: only the first frame (an AVIF: its primary image) is decoded;
- a libvips error is a refusal with libvips' reason, and never leaves libvips' error buffer
  spoiled for the next photo (see `_refusing`);
- no metadata reaches an output: the pixels are copied into a new image before encoding, and
  every encoder is told to keep nothing.

All failures that are the file's fault raise `shared.photos.probe.ImageRefused` subclasses whose
`str()` is the reason to show the submitter.

Encoder settings are libvips' defaults (the benchmark reference), so that sizes are comparable:
JPEG quality 75 with 4:2:0 chroma and Huffman optimisation off, WebP quality 75 effort 4, PNG
zlib level 6, and AVIF quality 50 at effort 4 (libaom speed 5) up to 1024 wide. Larger AVIFs
use effort 3 (speed 6) at quality 47: less than half the CPU time for about the same bytes and
SSIM (see AVIF_OPTIONS).

libvips is loaded on first use, in the process that renders (a Celery worker child, after the
fork), with one thread per photo: a worker renders one photo per core already.
"""

from __future__ import annotations

import ctypes
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from shared.photos.probe import ALLOWED, NAMES, ImageRefused, Probe, Undecodable, probe
from shared.photos.store import MediaStore

if TYPE_CHECKING:
    import pyvips

WIDTHS = (320, 640, 1024, 1600)
FIRST_WIDTH = 1024  # the width a page's <img src> shows (shared.photos.markup.img)
MAX_SIDE = 2560  # the capped original: longest side at most this many pixels
UNBOUNDED = 10_000_000  # `thumbnail`'s other side, when only the width is given

JPEG_OPTIONS: dict[str, Any] = {"Q": 75, "optimize_coding": False, "subsample_mode": "auto"}
PNG_OPTIONS: dict[str, Any] = {"compression": 6}
WEBP_OPTIONS: dict[str, Any] = {"Q": 75, "effort": 4}
# AVIF, by the rendition's pixel count: libvips' defaults (quality 50, effort 4 = libaom speed
# 5) up to about 1024 x 1269; larger ones use effort 3 (speed 6), less than half the CPU time,
# which spends more bytes at the same quantizer, so their quality is lowered to 47: within 4% of
# the reference's bytes and at SSIM 0.976-0.984 against its outputs on the benchmark photo.
# (At 1024 x 768, effort 3 at quality 47 gives SSIM 0.967.)
AVIF_OPTIONS: tuple[tuple[int, dict[str, Any]], ...] = (
    (1_300_000, {"Q": 50, "effort": 4}),
    (2**62, {"Q": 47, "effort": 3}),
)
SAVERS = {"jpeg": "jpegsave_buffer", "png": "pngsave_buffer", "webp": "webpsave_buffer"}

# The libvips loader each accepted format may be read by: its class, VipsForeignLoad<class>
# (its subclasses follow), and the name it gives itself in an image's "vips-loader" field,
# <name>load_source.
LOADERS = {
    "jpeg": ("Jpeg", "jpeg"),
    "png": ("Png", "png"),
    "webp": ("Webp", "webp"),
    "gif": ("Nsgif", "gif"),
    "avif": ("Heif", "heif"),
}
_M_ARENA_MAX = -8  # mallopt's parameter number, from glibc's malloc.h
# The words libvips' loaders use when the data ends too early (libpng: "read error").
_TRUNCATED = ("premature end", "truncated", "unexpected end", "end of file", "read error")


class TooSlow(ImageRefused):
    """Rendering this photo went past its time limit."""


Stage = Literal["all", "first", "rest"]


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
    avif = ("avif",) if avif_supported() else ()
    return ("png" if transparent else "jpeg", "webp", *avif)


def render(
    original: Path,
    store: MediaStore,
    *,
    max_pixels: int,
    time_limit: float = 60.0,
    stage: Stage = "all",
    transparent: bool | None = None,
) -> Rendered:
    """Make and store the renditions of `original`; see the module docstring.

    In two stages, so that an article publishes as soon as its photos can be shown: "first"
    makes what a first page view needs (the FIRST_WIDTH rendition, or the capped original when
    narrower, as JPEG or PNG and WebP); "rest" makes every other one, given whether the first
    stage found the photo `transparent` (PNG), so that every size keeps one format. "all" is
    both at once."""
    clock = _Clock(time_limit)
    info = probe(original, max_pixels=max_pixels)
    vips = _vips()
    with _refusing(vips, NAMES[info.format], original):
        return _render(vips, original, info, store, clock, stage, transparent)


def _render(
    vips: Any,
    original: Path,
    info: Probe,
    store: MediaStore,
    clock: _Clock,
    stage: Stage,
    transparent: bool | None,
) -> Rendered:
    photo = _inspect(vips, original, info)
    upright = (photo.width, photo.height) if photo.orient < 5 else (photo.height, photo.width)
    scale = min(1.0, MAX_SIDE / max(upright))
    capped_width = max(1, round(upright[0] * scale))
    # (width, height) boxes, upright: the capped original, then each smaller width.
    boxes = [(MAX_SIDE, MAX_SIDE)] + [
        (w, UNBOUNDED) for w in sorted(WIDTHS, reverse=True) if w < capped_width
    ]
    first = boxes[0] if capped_width <= FIRST_WIDTH else (FIRST_WIDTH, UNBOUNDED)
    if stage == "first":
        boxes = [first]
    renditions: list[RenditionOut] = []
    # Decided on the largest size made, for every size (the first stage's, for the rest).
    smallest: pyvips.Image | None = None
    for width, height in boxes:
        im = _thumbnail(vips, original, photo, (width, height))
        if transparent is None:
            transparent = im.hasalpha() and im.extract_band(im.bands - 1).min() < 255
        if im.hasalpha() and not transparent:
            im = _pixels(vips, im.extract_band(0, n=im.bands - 1))
        clock.check(f"resizing to {im.width} x {im.height}")
        formats = output_formats(transparent)
        if (width, height) == first and stage != "all":
            formats = formats[:2] if stage == "first" else formats[2:]
        for fmt in formats:
            data = encode(im, fmt)
            path = store.put_public(data, fmt)
            renditions.append(RenditionOut(path, im.width, im.height, fmt, len(data)))
            clock.check(f"encoding {im.width} x {im.height} {NAMES[fmt]}")
        smallest = im
    assert smallest is not None
    renditions.sort(key=lambda r: r.width)  # stable: formats keep their order per size
    return Rendered(*upright, placeholder(smallest), renditions)


@contextmanager
def _refusing(vips: Any, name: str, original: Path) -> Iterator[None]:
    """libvips' errors as `Undecodable`. libvips' messages can carry bytes from the file (an
    unknown box type, a PNG text key in Latin-1) that pyvips fails to decode as UTF-8; it then
    raises UnicodeDecodeError and leaves the message in libvips' error buffer, where it would
    spoil every later error of this process. The buffer is cleared before and after."""
    vips.vips_lib.vips_error_clear()
    try:
        yield
    except vips.Error as e:
        raise _undecodable(name, e, original) from None
    except UnicodeDecodeError:
        vips.vips_lib.vips_error_clear()
        raise Undecodable(f"broken {name}: libvips could not read it") from None


def encode(im: pyvips.Image, fmt: str) -> bytes:
    """The encoded bytes of `im` (8-bit sRGB or grey, alpha last if any) with no metadata."""
    if fmt == "avif":
        options = next(o for most, o in AVIF_OPTIONS if im.width * im.height <= most)
        data = im.heifsave_buffer(compression="av1", keep="none", **options)
    else:
        options = {"jpeg": JPEG_OPTIONS, "png": PNG_OPTIONS, "webp": WEBP_OPTIONS}[fmt]
        data = getattr(im, SAVERS[fmt])(keep="none", **options)
    assert isinstance(data, bytes)
    return data


def placeholder(im: pyvips.Image) -> str:
    """The average colour of `im` as "#rrggbb"; transparent parts count as white."""
    flat = im.flatten(background=[255] * (im.bands - 1)) if im.hasalpha() else im
    means = [flat.extract_band(b).avg() for b in range(flat.bands)]
    r, g, b = (round(v) for v in (means * 3 if len(means) == 1 else means))
    return f"#{r:02x}{g:02x}{b:02x}"


@cache
def avif_supported() -> bool:
    """Whether this libvips can write AVIF (libheif with an AV1 encoder)."""
    vips = _vips()
    try:
        vips.Image.black(16, 16, bands=3).heifsave_buffer(compression="av1", keep="none")
    except vips.Error:
        return False
    return True


def limit_malloc_arenas() -> None:
    """Make glibc's malloc keep one arena for every thread of this process (and of the
    processes it forks), as MALLOC_ARENA_MAX=1 would. libvips decodes and encodes in its own
    thread, which would otherwise get an arena of its own whose freed pages glibc keeps: a
    50 MP photo peaked at 247-296 MB with arenas per thread, 204-209 MB with one (5 runs each,
    bench/image_worker.py with a worker's imports), for the same CPU time. The limit is read
    when a process first needs a second arena, so `bantin worker` calls this before anything
    starts a thread; `_vips()` calls it too, for a process that renders without a worker. No-op
    where the C library has no `mallopt` (musl, macOS)."""
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    mallopt(_M_ARENA_MAX, 1)


@cache
def _vips() -> Any:
    """pyvips, loaded once per process and locked down: only the loaders of ALLOWED can run,
    one thread per photo, no operation cache (every photo is a new file)."""
    limit_malloc_arenas()
    import pyvips

    pyvips.concurrency_set(1)
    pyvips.cache_set_max(0)
    pyvips.block_untrusted_set(True)
    pyvips.operation_block_set("VipsForeignLoad", True)
    for fmt in ALLOWED:
        pyvips.operation_block_set(f"VipsForeignLoad{LOADERS[fmt][0]}", False)
    return pyvips


@dataclass(frozen=True, slots=True)
class _Photo:
    """What libvips will decode, checked against what the probe read."""

    format: str
    width: int  # as libvips decodes it (a GIF: its screen), before `orient`
    height: int
    orient: int  # EXIF orientation still to apply after resizing
    grey: bool  # one band (and alpha)
    screen: tuple[int, int] | None  # a GIF's screen, when its first frame is smaller


def _inspect(vips: Any, original: Path, info: Probe) -> _Photo:
    """Open `original` in libvips (the header only: no pixel is decoded) and check it against
    the probe: the loader must be the sniffed format's and the size the one the probe checked
    against the pixel cap, so that libvips never decodes another image than the one measured
    (an AVIF's libheif and Pillow's libavif can pick different images from one file)."""
    name = NAMES[info.format]
    head = _load(vips, original, info.format)
    loader = head.get("vips-loader")
    if loader != f"{LOADERS[info.format][1]}load_source":
        raise Undecodable(f"not a valid {name} file: it reads as {loader}")
    size, stored = (head.width, head.height), (info.width, info.height)
    orient, screen = info.orientation, None
    if info.format == "avif":
        # libheif applies the file's rotation and mirroring itself (the irot/imir boxes, which
        # Pillow reports as the orientation): what libvips gets is upright already. It also
        # applies a crop (clap), which libavif does not: never larger than the probe's.
        orient = 1
        fits = any(size[0] <= w and size[1] <= h for w, h in (stored, stored[::-1]))
    elif info.format == "gif" and size[0] <= stored[0] and size[1] <= stored[1]:
        # libnsgif takes the first frame's extent for some screen sizes; the rest of the
        # screen is transparent, as browsers show it.
        fits, screen = True, (stored if size != stored else None)
    else:
        fits = size == stored
    if not fits:
        raise Undecodable(
            f"not a valid {name} file: its image is {size[0]} x {size[1]} pixels,"
            f" its header says {stored[0]} x {stored[1]}"
        )
    grey = bool(head.bands - head.hasalpha() == 1)
    width, height = screen or size
    return _Photo(info.format, width, height, orient, grey, screen)


def _load(vips: Any, original: Path, fmt: str) -> pyvips.Image:
    """`original` opened by libvips (lazily) from a source, never by file name (a name is
    parsed for "[options]"). GIF and AVIF by their own loader: libvips' sniffing does not know
    animated AVIF ("avis"); JPEG, PNG and WebP as `thumbnail_source` will find them."""
    source = vips.Source.new_from_file(str(original))
    options = {"access": "sequential", "fail_on": "truncated"}
    if fmt == "gif":
        return vips.Image.gifload_source(source, **options)
    if fmt == "avif":
        return vips.Image.heifload_source(source, thumbnail=False, **options)
    return vips.Image.new_from_source(source, "", **options)


def _thumbnail(vips: Any, original: Path, photo: _Photo, box: tuple[int, int]) -> pyvips.Image:
    """The photo fitted into the upright `box` (never enlarged), upright, 8-bit sRGB (an
    opaque grey photo stays grey), in memory with no metadata at all."""
    width, height = box if photo.orient < 5 else box[::-1]
    options = {"height": height, "size": "down", "no_rotate": True}
    if photo.format in ("jpeg", "png", "webp"):
        # Shrink-on-load (JPEG, WebP) happens here. (libvips 8.18's thumbnail_source does not
        # pass its own `fail_on` to the loader; the option string does.)
        source = vips.Source.new_from_file(str(original))
        im = vips.Image.thumbnail_source(
            source, width, option_string="fail_on=truncated", **options
        )
    else:
        im = _load(vips, original, photo.format)  # never an AVIF's embedded thumbnail
        if photo.screen is not None:  # the rest of a GIF's screen is transparent
            im = im if im.hasalpha() else im.bandjoin_const([255])
            im = im.embed(0, 0, *photo.screen, extend="background", background=[0] * im.bands)
        im = im.thumbnail_image(width, **options)
    im = _to_srgb(vips, im)
    target = "b-w" if photo.grey and not im.hasalpha() else "srgb"
    if im.interpretation != target or im.format != "uchar":
        im = im.colourspace(target)  # 16-bit scaled to 8, grey to RGB and back (alpha kept)
    if im.format != "uchar":
        im = im.cast("uchar")
    im = _pixels(vips, im)
    if photo.orient > 1:  # on the pixels in memory: a quarter turn reads them out of order
        im.set_type(vips.GValue.gint_type, "orientation", photo.orient)
        im = _pixels(vips, im.autorot())
    return im


def _to_srgb(vips: Any, im: pyvips.Image) -> pyvips.Image:
    """`im` converted from its embedded ICC profile to sRGB, when the profile fits the image
    (an RGB profile for RGB, CMYK for CMYK, grey for grey) and can be read; otherwise the
    profile is ignored, as browsers do. CMYK without a usable profile uses libvips' built-in
    CMYK profile. An embedded sRGB profile is converted too: a profile that only calls itself
    sRGB is not trusted."""
    cmyk = im.interpretation == "cmyk"
    icc = im.get("icc-profile-data") if im.get_typeof("icc-profile-data") else b""
    space = {1: b"GRAY", 3: b"RGB ", 4: b"CMYK"}.get(im.bands - (im.hasalpha() and not cmyk))
    fits = len(icc) >= 128 and icc[36:40] == b"acsp" and icc[16:20] == space
    if not fits and not cmyk:
        return im
    try:
        if fits:
            return im.icc_transform("srgb", embedded=True, intent="relative")
    except vips.Error:
        if not cmyk:
            return im
    im = im.copy()
    if icc:
        im.remove("icc-profile-data")
    return im.icc_transform("srgb", input_profile="cmyk", intent="relative")


def _pixels(vips: Any, im: pyvips.Image) -> pyvips.Image:
    """`im` computed into memory as a new image: its pixels and interpretation, nothing else
    (no EXIF, XMP, ICC profile, comment or any other field)."""
    data = im.write_to_memory()
    bare = vips.Image.new_from_memory(data, im.width, im.height, im.bands, "uchar")
    return bare.copy(interpretation=im.interpretation)


class _Clock:
    def __init__(self, limit: float) -> None:
        self.limit = limit
        self.deadline = time.monotonic() + limit

    def check(self, step: str) -> None:
        if time.monotonic() > self.deadline:
            raise TooSlow(f"rendering took longer than {self.limit:g} s (stopped after {step})")


def _undecodable(name: str, error: Exception, original: Path) -> Undecodable:
    """The reason a libvips error gives, for the submitter: its first line, without the
    library's prefix ("VipsJpeg: ...", "vipspng: ...") or the server's path of the file."""
    detail = (getattr(error, "detail", "") or str(error)).strip().replace(str(original), "file")
    first = detail.splitlines()[0] if detail else type(error).__name__
    message = re.sub(r"^\w+: ", "", first)
    if any(word in detail.lower() for word in _TRUNCATED):
        return Undecodable(f"truncated {name}: the file ends before the image does ({message})")
    return Undecodable(f"broken {name}: {message}")
