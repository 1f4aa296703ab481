"""shared.photos.render.render: upright, sRGB, metadata-free renditions, and refusal of files that
must never be decoded."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import platform
import re
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from PIL import ExifTags, Image, ImageCms, ImageDraw, PngImagePlugin, features

from bantin.bootstrap import demo_seed, text_only
from shared.photos import render as images
from shared.photos.probe import NotAccepted, Probe, TooManyPixels, Undecodable, probe, sniff
from shared.photos.render import MAX_SIDE, Rendered, RenditionOut, TooSlow, render
from shared.photos.store import MediaStore
from tests.fixtures.images import (
    BLUE,
    CORNERS,
    GREEN,
    RED,
    avif_cropped,
    avif_with_item,
    corner_colours,
    exif,
    gif_on_a_larger_screen,
    heic_head,
    jpeg_claiming,
    near,
    oriented,
    png_bomb,
    png_rgb16,
    quadrants,
    save_oriented,
    swapped_primaries_profile,
)
from tests.photos import jpeg, multipart
from tests.test_api import bearer, create_category, wait_status

ROOT = Path(__file__).resolve().parent.parent
# AVIF input needs Pillow's AVIF plugin (the header is read by `shared.photos.probe.probe`); AVIF
# output needs libvips with an AV1 encoder (pyvips-binary has one).
needs_avif = pytest.mark.skipif(not features.check("avif"), reason="Pillow without AVIF")
AVIF_OUT = images.avif_supported()
MAX_PIXELS = 50_000_000
OPAQUE = ("jpeg", "webp", "avif") if AVIF_OUT else ("jpeg", "webp")
TRANSPARENT = ("png", "webp", "avif") if AVIF_OUT else ("png", "webp")


@pytest.fixture
def store(tmp_path: Path) -> MediaStore:
    return MediaStore(tmp_path / "media")


def do_render(path: Path, store: MediaStore, **options: float) -> Rendered:
    result = render(path, store, max_pixels=int(options.pop("max_pixels", MAX_PIXELS)), **options)
    check_files(result, store)
    return result


def check_files(result: Rendered, store: MediaStore) -> None:
    """Every rendition is a stored file of the stated format, size and length, named after
    its SHA-256, and carries no metadata at all."""
    assert re.fullmatch(r"#[0-9a-f]{6}", result.placeholder)
    for r in result.renditions:
        file = store.public_file(r.path)
        data = file.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        ext = {"jpeg": "jpg"}.get(r.format, r.format)
        assert r.path == f"/media/{digest[:2]}/{digest}.{ext}"
        assert len(data) == r.bytes
        assert sniff(data[:512]) == r.format
        with Image.open(io.BytesIO(data)) as im:
            assert im.size == (r.width, r.height)
            assert getattr(im, "n_frames", 1) == 1
            assert not set(im.info) & {"exif", "icc_profile", "xmp", "XML:com.adobe.xmp"}
            assert not set(im.info) & {"comment", "Comment", "Raw profile type exif"}
            assert not im.getexif()
            assert im.mode in ("L", "RGB", "RGBA")
        for marker in (b"Exif\x00\x00", b"ICC_PROFILE", b"http://ns.adobe.com/xap", b"GPS"):
            assert marker not in data, (r, marker)


def opened(store: MediaStore, r: RenditionOut) -> Image.Image:
    im = Image.open(store.public_file(r.path))
    im.load()
    return im


def sizes(result: Rendered, fmt: str) -> list[tuple[int, int]]:
    return [(r.width, r.height) for r in result.renditions if r.format == fmt]


def save(tmp_path: Path, im: Image.Image, fmt: str, name: str = "photo", **options: object) -> Path:
    path = tmp_path / name
    im.save(path, fmt, **options)
    return path


# Sizes -------------------------------------------------------------------------------------


def test_widths_and_formats(tmp_path: Path, store: MediaStore) -> None:
    result = do_render(save(tmp_path, quadrants((3000, 2000)), "JPEG"), store)
    assert (result.width, result.height) == (3000, 2000)
    expected = [(320, 213), (640, 427), (1024, 683), (1600, 1067), (2560, 1707)]
    for fmt in OPAQUE:
        assert sizes(result, fmt) == expected
    assert [r.format for r in result.renditions[: len(OPAQUE)]] == list(OPAQUE)
    assert len(result.renditions) == len(expected) * len(OPAQUE)
    assert len({r.path for r in result.renditions}) == len(result.renditions)


@pytest.mark.parametrize(
    "size, fmt, first_width",
    [((3000, 2000), "JPEG", 1024), ((800, 600), "JPEG", 800), ((1500, 1000), "PNG", 1024)],
)
def test_two_stages_make_what_one_makes(
    tmp_path: Path, store: MediaStore, size: tuple[int, int], fmt: str, first_width: int
) -> None:
    """The first stage makes what a first page view needs (FIRST_WIDTH, or the capped original
    when narrower, as JPEG or PNG and WebP); the rest makes every other rendition; together
    they are exactly what rendering at once makes, file for file."""
    im = quadrants(size)
    if fmt == "PNG":  # transparent: PNG at every size, whichever stage makes it
        im = im.convert("RGBA")
        im.putpixel((0, 0), (0, 0, 0, 0))
    path = save(tmp_path, im, fmt)
    first = do_render(path, store, stage="first")
    kinds = TRANSPARENT if fmt == "PNG" else OPAQUE
    assert [(r.width, r.format) for r in first.renditions] == [
        (first_width, kinds[0]),
        (first_width, "webp"),
    ]
    rest = do_render(path, store, stage="rest", transparent=fmt == "PNG")
    whole = do_render(path, store)
    together = {(r.width, r.format, r.path) for r in first.renditions + rest.renditions}
    assert together == {(r.width, r.format, r.path) for r in whole.renditions}
    assert len(first.renditions) + len(rest.renditions) == len(whole.renditions)


def test_never_upscaled(tmp_path: Path, store: MediaStore) -> None:
    result = do_render(save(tmp_path, quadrants((300, 200)), "PNG"), store)
    for fmt in OPAQUE:
        assert sizes(result, fmt) == [(300, 200)]


def test_a_width_equal_to_the_original_is_not_repeated(tmp_path: Path, store: MediaStore) -> None:
    result = do_render(save(tmp_path, quadrants((1024, 512)), "JPEG"), store)
    assert sizes(result, "jpeg") == [(320, 160), (640, 320), (1024, 512)]


def test_portrait_is_capped_on_its_longest_side(tmp_path: Path, store: MediaStore) -> None:
    result = do_render(save(tmp_path, quadrants((3000, 4000)), "JPEG"), store)
    assert sizes(result, "jpeg")[-1] == (1920, MAX_SIDE)
    assert [w for w, _ in sizes(result, "jpeg")] == [320, 640, 1024, 1600, 1920]


def test_a_very_tall_photo_gets_no_width_beyond_its_capped_size(
    tmp_path: Path, store: MediaStore
) -> None:
    result = do_render(save(tmp_path, quadrants((1000, 8000)), "PNG"), store)
    assert sizes(result, "jpeg") == [(320, MAX_SIDE)]
    assert all(r.height <= MAX_SIDE for r in result.renditions)


def test_each_size_is_libvips_thumbnail_of_the_file(tmp_path: Path, store: MediaStore) -> None:
    # Each size straight from the file (shrink-on-load: 320 wide from a 1/8 decode), never
    # from another size, encoded with libvips' default JPEG settings: the very bytes of
    # `thumbnail` + `jpegsave`, the benchmark's reference pipeline.
    import pyvips

    path = save(tmp_path, quadrants((6000, 4000)), "JPEG", quality=90)
    result = do_render(path, store)
    jpegs = {r.width: r for r in result.renditions if r.format == "jpeg"}
    assert sorted(jpegs) == [320, 640, 1024, 1600, 2560]
    for width, r in jpegs.items():
        height = images.UNBOUNDED if width < MAX_SIDE else MAX_SIDE
        thumb = pyvips.Image.thumbnail(str(path), width, height=height, size="down")
        expected = thumb.jpegsave_buffer(Q=75, optimize_coding=False, keep="none")
        assert store.public_file(r.path).read_bytes() == expected, width


def test_libvips_runs_no_loader_outside_the_allowed_formats(tmp_path: Path) -> None:
    vips = images._vips()
    svg = tmp_path / "a.svg"
    svg.write_bytes(b'<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"/>')
    tiff = save(tmp_path, quadrants((64, 64)), "TIFF", name="a.tif")
    for path in (svg, tiff):
        with pytest.raises(vips.Error):
            vips.Image.new_from_file(str(path)).avg()
    assert vips.Image.new_from_file(str(save(tmp_path, quadrants((64, 64)), "PNG"))).avg() > 0


def test_the_loader_libvips_picks_must_be_the_sniffed_formats(
    tmp_path: Path, store: MediaStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(images.LOADERS, "jpeg", ("Jpeg", "png"))
    path = save(tmp_path, quadrants((300, 200)), "JPEG")
    with pytest.raises(Undecodable, match=r"^not a valid JPEG file: it reads as jpegload_source$"):
        render(path, store, max_pixels=MAX_PIXELS)
    assert not store.public.exists()


# Orientation -------------------------------------------------------------------------------


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_is_rendered_upright(
    tmp_path: Path, store: MediaStore, orientation: int
) -> None:
    upright = quadrants((720, 480))
    path = save_oriented(tmp_path / "o.jpg", upright, orientation)
    with Image.open(path) as stored:  # the file really is stored turned, with the tag
        assert stored.getexif()[ExifTags.Base.Orientation] == orientation
        assert stored.size == ((480, 720) if orientation >= 5 else (720, 480))
        if orientation != 1:
            assert not all(near(c, CORNERS[k]) for k, c in corner_colours(stored).items())
    result = do_render(path, store)
    assert (result.width, result.height) == (720, 480)
    assert sizes(result, "jpeg") == [(320, 213), (640, 427), (720, 480)]
    for r in result.renditions:
        colours = corner_colours(opened(store, r))
        for corner, colour in CORNERS.items():
            assert near(colours[corner], colour), (r, corner, colours)


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", pytest.param("AVIF", marks=needs_avif)])
def test_orientation_in_other_formats(tmp_path: Path, store: MediaStore, fmt: str) -> None:
    path = save_oriented(tmp_path / "o", quadrants((400, 300)), 6, fmt)
    result = do_render(path, store)
    assert (result.width, result.height) == (400, 300)
    for r in result.renditions:
        colours = corner_colours(opened(store, r))
        assert all(near(colours[k], v) for k, v in CORNERS.items()), (r, colours)


# Metadata ----------------------------------------------------------------------------------


def test_gps_and_all_other_metadata_are_stripped(tmp_path: Path, store: MediaStore) -> None:
    path = tmp_path / "gps.jpg"
    quadrants((900, 600)).save(
        path,
        "JPEG",
        exif=exif(orientation=1, gps=True),
        icc_profile=ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes(),
        comment=b"Phong vien: Nguyen Van A, 0912345678",
        xmp=b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/'
        b'02/22-rdf-syntax-ns#" xmlns:xmp="http://ns.adobe.com/xap/1.0/"/></x:xmpmeta>',
    )
    with Image.open(path) as source:  # the original does carry all of it
        assert source.getexif().get_ifd(ExifTags.IFD.GPSInfo)[ExifTags.GPS.GPSLatitudeRef] == "N"
        assert {"exif", "icc_profile", "comment", "xmp"} <= set(source.info)
    result = do_render(path, store)  # check_files: no EXIF, GPS, ICC, XMP or comment
    assert len(result.renditions) == 3 * len(OPAQUE)
    for r in result.renditions:
        assert b"Nguyen" not in store.public_file(r.path).read_bytes()


# Colour ------------------------------------------------------------------------------------


def test_cmyk_jpeg(tmp_path: Path, store: MediaStore) -> None:
    cmyk = Image.new("CMYK", (800, 600), (0, 0, 0, 0))  # white
    cmyk.paste((0, 255, 255, 0), (0, 0, 400, 300))  # red top left
    path = save(tmp_path, cmyk, "JPEG")
    with Image.open(path) as source:
        assert source.mode == "CMYK"
    result = do_render(path, store)
    for r in result.renditions:
        im = opened(store, r)
        assert im.mode == "RGB"
        colours = corner_colours(im)
        assert near(colours["top_left"], (255, 0, 0), 50), (r, colours)
        assert near(colours["bottom_right"], (255, 255, 255), 20), (r, colours)


def test_embedded_profile_is_converted_to_srgb(tmp_path: Path, store: MediaStore) -> None:
    # Stored pixels are pure red, but the profile says that colour is sRGB blue.
    path = save(
        tmp_path, Image.new("RGB", (700, 500), (255, 0, 0)), "JPEG",
        icc_profile=swapped_primaries_profile(), quality=95,
    )  # fmt: skip
    result = do_render(path, store)
    for r in result.renditions:
        colours = corner_colours(opened(store, r))
        assert near(colours["top_left"], (0, 0, 255), 30), (r, colours)
    assert near(tuple(int(result.placeholder[i : i + 2], 16) for i in (1, 3, 5)), (0, 0, 255))


@pytest.mark.parametrize(
    "icc",
    [
        ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes(),  # not an RGB profile
        b"acsp but not really a profile" * 4,
    ],
    ids=["lab", "garbage"],
)
def test_a_profile_that_does_not_fit_is_ignored(
    tmp_path: Path, store: MediaStore, icc: bytes
) -> None:
    path = save(tmp_path, quadrants((500, 400)), "JPEG", icc_profile=icc)
    result = do_render(path, store)
    for r in result.renditions:
        colours = corner_colours(opened(store, r))
        assert all(near(colours[k], v) for k, v in CORNERS.items()), (r, colours)


def test_16_bit_grey_png_is_scaled_not_clipped(tmp_path: Path, store: MediaStore) -> None:
    im = Image.new("I;16", (600, 400), 65535)
    im.paste(Image.new("I;16", (300, 400), 16384), (300, 0))  # a quarter of full scale
    path = save(tmp_path, im, "PNG")
    with Image.open(path) as source:
        assert source.mode == "I;16"
        assert source.getpixel((590, 200)) == 16384
    result = do_render(path, store)
    assert sizes(result, "jpeg") == [(320, 213), (600, 400)]
    for r in result.renditions:
        grey = opened(store, r).convert("L")
        left = grey.getpixel((grey.width // 10, grey.height // 2))
        right = grey.getpixel((grey.width * 9 // 10, grey.height // 2))
        assert isinstance(left, int) and isinstance(right, int)
        assert left >= 250 and 56 <= right <= 72, (r, left, right)


def test_16_bit_rgb_png(tmp_path: Path, store: MediaStore) -> None:
    path = tmp_path / "rgb16.png"
    path.write_bytes(png_rgb16(400, 300, (50000, 10000, 0)))
    result = do_render(path, store)
    for r in result.renditions:
        colours = corner_colours(opened(store, r))
        assert near(colours["top_left"], (195, 39, 0), 12), (r, colours)


def test_grey_jpeg_stays_grey(tmp_path: Path, store: MediaStore) -> None:
    result = do_render(save(tmp_path, Image.linear_gradient("L").resize((700, 500)), "JPEG"), store)
    jpegs = [r for r in result.renditions if r.format == "jpeg"]
    assert jpegs and all(opened(store, r).mode == "L" for r in jpegs)


# Transparency ------------------------------------------------------------------------------


def palette_with_hole(size: tuple[int, int]) -> Image.Image:
    """A palette image: red left half, transparent right half."""
    im = Image.new("P", size, 0)
    im.putpalette([255, 255, 255, 220, 30, 30] + [0, 0, 0] * 254)
    ImageDraw.Draw(im).rectangle((0, 0, size[0] // 2 - 1, size[1]), fill=1)
    im.info["transparency"] = 0
    return im


def test_palette_png_with_transparency(tmp_path: Path, store: MediaStore) -> None:
    path = save(tmp_path, palette_with_hole((800, 400)), "PNG", transparency=0)
    result = do_render(path, store)
    assert {r.format for r in result.renditions} == set(TRANSPARENT)
    for fmt in TRANSPARENT:
        assert sizes(result, fmt) == [(320, 160), (640, 320), (800, 400)]
    for r in result.renditions:
        im = opened(store, r)
        assert im.mode == "RGBA", r
        left = im.getpixel((im.width // 10, im.height // 2))
        right = im.getpixel((im.width * 9 // 10, im.height // 2))
        assert isinstance(left, tuple) and isinstance(right, tuple)
        assert near(left, (*RED, 255)) and right[3] == 0, (r, left, right)
    # Half red, half transparent shows on white as pink.
    assert near(tuple(int(result.placeholder[i : i + 2], 16) for i in (1, 3, 5)), (238, 143, 143))


def test_gif_with_transparency(tmp_path: Path, store: MediaStore) -> None:
    im = Image.new("P", (500, 300), 0)
    im.putpalette([0, 0, 0, *RED] + [0, 0, 0] * 254)
    im.paste(1, (0, 0, 250, 300))
    result = do_render(save(tmp_path, im, "GIF", transparency=0), store)
    assert {r.format for r in result.renditions} == set(TRANSPARENT)
    for r in result.renditions:
        rendered = opened(store, r)
        assert rendered.getpixel((rendered.width - 5, 150))[3] == 0  # type: ignore[index]


def test_rgba_without_any_transparent_pixel_becomes_jpeg(tmp_path: Path, store: MediaStore) -> None:
    path = save(tmp_path, quadrants((500, 300)).convert("RGBA"), "PNG")
    result = do_render(path, store)
    assert {r.format for r in result.renditions} == set(OPAQUE)


def test_la_png_keeps_its_alpha(tmp_path: Path, store: MediaStore) -> None:
    im = Image.new("LA", (400, 200), (90, 255))
    im.paste((0, 0), (200, 0, 400, 200))
    result = do_render(save(tmp_path, im, "PNG"), store)
    assert {r.format for r in result.renditions} == set(TRANSPARENT)
    for r in result.renditions:
        im = opened(store, r)
        assert im.mode == "RGBA"
        assert im.getpixel((im.width - 10, 100))[3] == 0  # type: ignore[index]
        assert near(im.getpixel((10, 100)), (90, 90, 90, 255), 3)  # type: ignore[arg-type]


# Other inputs ------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "PNG", pytest.param("AVIF", marks=needs_avif)])
def test_animations_render_their_first_frame(tmp_path: Path, store: MediaStore, fmt: str) -> None:
    frames = [Image.new("RGB", (480, 360), c) for c in (RED, GREEN, BLUE)]
    path = save(tmp_path, frames[0], fmt, save_all=True, append_images=frames[1:], duration=200)
    with Image.open(path) as source:
        assert getattr(source, "n_frames", 1) == 3
    result = do_render(path, store)
    assert sizes(result, "jpeg") == [(320, 240), (480, 360)]
    for r in result.renditions:
        assert near(corner_colours(opened(store, r))["bottom_right"], RED), r


def test_mpo_renders_its_first_picture(tmp_path: Path, store: MediaStore) -> None:
    # Many phones write a JPEG with a Multi-Picture index (a depth map, a second lens).
    second = Image.new("RGB", (900, 600), BLUE)
    path = save(tmp_path, quadrants((900, 600)), "MPO", save_all=True, append_images=[second])
    with Image.open(path) as source:
        assert source.format == "MPO"
    result = do_render(path, store)
    assert sizes(result, "jpeg") == [(320, 213), (640, 427), (900, 600)]
    for r in result.renditions:
        colours = corner_colours(opened(store, r))
        assert all(near(colours[k], v) for k, v in CORNERS.items()), (r, colours)


def test_corrupt_exif_is_ignored(tmp_path: Path, store: MediaStore) -> None:
    path = save(
        tmp_path, quadrants((700, 500)), "JPEG", exif=b"Exif\x00\x00II*\x00\xff\xff\xff\x7f"
    )
    with pytest.warns(UserWarning, match="Corrupt EXIF data"):  # Pillow warns, goes on
        result = do_render(path, store)
    assert (result.width, result.height) == (700, 500)


def test_webp_input(tmp_path: Path, store: MediaStore) -> None:
    result = do_render(save(tmp_path, quadrants((1200, 900)), "WEBP", quality=90), store)
    assert sizes(result, "webp") == [(320, 240), (640, 480), (1024, 768), (1200, 900)]
    for r in result.renditions:
        colours = corner_colours(opened(store, r))
        assert all(near(colours[k], v) for k, v in CORNERS.items()), (r, colours)


@needs_avif
def test_avif_input(tmp_path: Path, store: MediaStore) -> None:
    result = do_render(save(tmp_path, quadrants((1100, 700)), "AVIF", quality=90), store)
    assert sizes(result, "avif") == [(320, 204), (640, 407), (1024, 652), (1100, 700)]
    for r in result.renditions:
        colours = corner_colours(opened(store, r))
        assert all(near(colours[k], v) for k, v in CORNERS.items()), (r, colours)


def test_placeholder_is_the_average_colour(tmp_path: Path, store: MediaStore) -> None:
    result = do_render(save(tmp_path, Image.new("RGB", (640, 480), (18, 52, 86)), "PNG"), store)
    assert result.placeholder == "#123456"


@needs_avif
def test_an_avifs_thumbnail_item_is_never_used(tmp_path: Path, store: MediaStore) -> None:
    # libvips' thumbnail would take the embedded 800 x 600 thumbnail for the small sizes.
    vips = images._vips()
    blue = (vips.Image.black(1600, 1200, bands=3) + list(BLUE)).cast("uchar")
    red = (vips.Image.black(800, 600, bands=3) + list(RED)).cast("uchar")
    path = tmp_path / "thumb.avif"
    path.write_bytes(
        avif_with_item(
            blue.heifsave_buffer(compression="av1", effort=0),
            red.heifsave_buffer(compression="av1", effort=0),
        )
    )
    assert vips.Image.thumbnail(str(path), 320).getpoint(5, 5)[0] > 150  # the trap is real
    result = do_render(path, store)
    assert sizes(result, "jpeg") == [(320, 240), (640, 480), (1024, 768), (1600, 1200)]
    for r in result.renditions:
        assert near(corner_colours(opened(store, r))["top_left"], BLUE), r


def av1(size: tuple[int, int], colour: tuple[int, ...]) -> bytes:
    """A one-item AVIF of one colour (grey when `colour` has one value), quickly encoded."""
    vips = images._vips()
    im = (vips.Image.black(*size, bands=len(colour)) + list(colour)).cast("uchar")
    data = im.heifsave_buffer(compression="av1", effort=0)
    assert isinstance(data, bytes)
    return data


@needs_avif
@pytest.mark.parametrize(
    ("alpha", "max_pixels", "refusal", "message"),
    [
        ((1200, 1000), 1_100_000, TooManyPixels, "^photo is 1200 x 1000 pixels"),
        ((2000, 1000), MAX_PIXELS, Undecodable, "^not a valid AVIF file: its 2 images add up to"
         " 2,003,072 pixels, far more than its 64 x 48 photo needs$"),
    ],
    ids=["an-image-over-the-cap", "all-images-far-over-the-photo"],
)  # fmt: skip
def test_an_avifs_other_images_count_against_the_cap(
    tmp_path: Path,
    store: MediaStore,
    alpha: tuple[int, int],
    max_pixels: int,
    refusal: type[Exception],
    message: str,
) -> None:
    # libheif decodes an alpha image (and a grid's tiles) besides the primary one, each of its
    # own size: a 64 x 48 photo with a 108 MP alpha image took 1.6 GB. Grid tiles are counted
    # by the same rule (every `ispe` of the file).
    path = tmp_path / "alpha.avif"
    path.write_bytes(avif_with_item(av1((64, 48), RED), av1(alpha, (255,)), b"auxl"))
    with pytest.raises(refusal, match=message):
        probe(path, max_pixels=max_pixels)  # the upload is refused, not only the rendering
    with pytest.raises(refusal, match=message):
        render(path, store, max_pixels=max_pixels)
    path.write_bytes(avif_with_item(av1((64, 48), RED), av1((64, 48), (255,)), b"auxl"))
    assert sizes(do_render(path, store, max_pixels=max_pixels), "jpeg") == [(64, 48)]


@needs_avif
def test_a_libvips_message_that_is_not_text_spoils_nothing(
    tmp_path: Path, store: MediaStore
) -> None:
    # libheif names the unknown box in its message; pyvips cannot decode it as UTF-8 and left
    # it in libvips' error buffer, where it broke every later photo of the worker process.
    path = tmp_path / "odd.avif"
    path.write_bytes(avif_with_item(av1((64, 48), RED), av1((64, 48), (255,)), b"auxl", b"\xcduxC"))
    with pytest.raises(Undecodable, match=r"^broken AVIF: libvips could not read it$"):
        render(path, store, max_pixels=MAX_PIXELS)
    after = do_render(save(tmp_path, quadrants((300, 200)), "JPEG", name="next.jpg"), store)
    assert sizes(after, "jpeg") == [(300, 200)]


def test_a_png_text_key_in_latin1(tmp_path: Path, store: MediaStore) -> None:
    # PNG keys are Latin-1; pyvips fails to decode one as a field name (get_fields()).
    text = PngImagePlugin.PngInfo()
    text.add_text("Título", "anh")
    path = save(tmp_path, quadrants((300, 200)), "PNG", pnginfo=text)
    assert sizes(do_render(path, store), "jpeg") == [(300, 200)]


@needs_avif
def test_an_avif_crop_is_applied(tmp_path: Path, store: MediaStore) -> None:
    path = tmp_path / "clap.avif"
    path.write_bytes(avif_cropped(av1((600, 400), RED), 500, 300))
    result = do_render(path, store)
    assert (result.width, result.height) == (500, 300)
    assert sizes(result, "jpeg") == [(320, 192), (500, 300)]


def test_a_gif_frame_smaller_than_its_screen_stays_in_place(
    tmp_path: Path, store: MediaStore
) -> None:
    # libnsgif takes the frame's extent for an 800 x 600 screen; the probe (and browsers) the
    # screen, whose uncovered part is transparent.
    path = tmp_path / "small-frame.gif"
    path.write_bytes(gif_on_a_larger_screen((800, 600), (100, 100)))
    assert images._vips().Image.new_from_file(str(path)).width == 100  # the trap is real
    result = do_render(path, store)
    assert (result.width, result.height) == (800, 600)
    assert sizes(result, "png") == [(320, 240), (640, 480), (800, 600)]
    for r in result.renditions:
        im = opened(store, r)
        assert near(im.getpixel((2, 2)), (*RED, 255), 10), r  # type: ignore[arg-type]
        assert im.getpixel((im.width - 5, im.height - 5))[3] == 0, r  # type: ignore[index]


def test_libvips_must_see_the_size_the_probe_checked(
    tmp_path: Path, store: MediaStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two libraries can read two images from one file (an AVIF's still item and its
    # animation): libvips must never decode another size than the one checked against the cap.
    path = save(tmp_path, quadrants((600, 400)), "PNG")
    small = Probe("png", 60, 40, 60, 40, 1, False)
    monkeypatch.setattr(images, "probe", lambda *a, **k: small)
    with pytest.raises(Undecodable, match=r"^not a valid PNG file: its image is 600 x 400 pixels,"
                       r" its header says 60 x 40$"):  # fmt: skip
        render(path, store, max_pixels=MAX_PIXELS)
    assert not store.public.exists()


def test_xmp_orientation_is_ignored(tmp_path: Path, store: MediaStore) -> None:
    # Browsers and libvips turn a photo by its EXIF only; Pillow's getexif() also reads XMP.
    path = save(
        tmp_path, quadrants((600, 400)), "JPEG",
        xmp=b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/'
        b'02/22-rdf-syntax-ns#"><rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/"'
        b' tiff:Orientation="6"/></rdf:RDF></x:xmpmeta>',
    )  # fmt: skip
    with Image.open(path) as im:
        assert im.getexif().get(ExifTags.Base.Orientation) == 6  # what Pillow would do
    assert probe(path, max_pixels=MAX_PIXELS).orientation == 1
    result = do_render(path, store)
    assert (result.width, result.height) == (600, 400)
    for r in result.renditions:
        colours = corner_colours(opened(store, r))
        assert all(near(colours[k], v) for k, v in CORNERS.items()), (r, colours)


# Idempotence -------------------------------------------------------------------------------


def snapshot(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


def test_rendering_again_gives_the_same_paths_and_writes_nothing(
    tmp_path: Path, store: MediaStore
) -> None:
    path = save_oriented(tmp_path / "o.jpg", quadrants((2000, 1500)), 6)
    first = do_render(path, store)
    before = snapshot(store.root)
    assert len([f for f in before if f.startswith("public/")]) == len(first.renditions)
    time.sleep(0.01)
    second = do_render(path, store)
    assert second == first
    assert snapshot(store.root) == before


# Refusals ----------------------------------------------------------------------------------


def test_html_named_jpg_is_refused(tmp_path: Path, store: MediaStore) -> None:
    path = tmp_path / "photo.jpg"
    path.write_bytes(b"<html><head><title>403 Forbidden</title></head></html>")
    with pytest.raises(NotAccepted, match=r"^not an image: looks like HTML"):
        render(path, store, max_pixels=MAX_PIXELS)


def test_svg_is_refused(tmp_path: Path, store: MediaStore) -> None:
    path = tmp_path / "logo.png"
    path.write_bytes(b'<svg xmlns="http://www.w3.org/2000/svg"><image href="file:///etc/passwd"/>')
    with pytest.raises(NotAccepted, match=r"^SVG is not accepted"):
        render(path, store, max_pixels=MAX_PIXELS)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (heic_head(), "HEIC/HEIF photos are not accepted"),
        (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", "PostScript/EPS"),
        (b"8BPS\x00\x01" + b"\x00" * 40, "PSD"),
    ],
)
def test_other_formats_are_never_decoded(
    tmp_path: Path, store: MediaStore, data: bytes, message: str
) -> None:
    path = tmp_path / "x.jpg"
    path.write_bytes(data)
    with pytest.raises(NotAccepted, match=message):
        render(path, store, max_pixels=MAX_PIXELS)


def test_tiff_is_refused(tmp_path: Path, store: MediaStore) -> None:
    with pytest.raises(NotAccepted, match="TIFF"):
        render(save(tmp_path, quadrants((64, 64)), "TIFF"), store, max_pixels=MAX_PIXELS)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "WEBP"])
def test_truncated_files_are_refused(tmp_path: Path, store: MediaStore, fmt: str) -> None:
    noise = Image.effect_noise((600, 400), 60).convert("RGB")
    data = io.BytesIO()
    noise.save(data, fmt)
    path = tmp_path / "cut"
    path.write_bytes(data.getvalue()[: len(data.getvalue()) * 2 // 3])
    with pytest.raises(Undecodable) as caught:
        render(path, store, max_pixels=MAX_PIXELS)
    name = {"WEBP": "WebP"}.get(fmt, fmt)
    assert re.match(rf"(truncated|broken|not a valid) {name}", str(caught.value)), caught.value
    assert not list(store.public.rglob("*.*")) if store.public.exists() else True


@pytest.mark.parametrize("options", [{}, {"lossless": True}], ids=["lossy", "lossless"])
def test_a_cut_webp_whose_sizes_were_mended_is_refused_by_libvips(
    tmp_path: Path, store: MediaStore, options: dict[str, bool]
) -> None:
    # Pillow's probe reads the header of a cut WebP whose RIFF and chunk sizes agree with the
    # cut; libvips' decoder must still refuse it.
    data = io.BytesIO()
    Image.effect_noise((600, 400), 60).convert("RGB").save(data, "WEBP", **options)
    cut = bytearray(data.getvalue()[: len(data.getvalue()) * 2 // 3 & ~1])
    cut[4:8] = struct.pack("<I", len(cut) - 8)
    cut[16:20] = struct.pack("<I", len(cut) - 20)
    path = tmp_path / "cut.webp"
    path.write_bytes(bytes(cut))
    assert probe(path, max_pixels=MAX_PIXELS).width == 600  # the probe does not notice
    with pytest.raises(Undecodable, match=r"^(truncated|broken) WebP: "):
        render(path, store, max_pixels=MAX_PIXELS)
    assert not store.public.exists()


def test_truncated_jpeg_message(tmp_path: Path, store: MediaStore) -> None:
    data = io.BytesIO()
    Image.effect_noise((800, 600), 60).convert("RGB").save(data, "JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(data.getvalue()[:40_000])
    expected = r"^truncated JPEG: the file ends before the image does \(premature end"
    with pytest.raises(Undecodable, match=expected):
        render(path, store, max_pixels=MAX_PIXELS)


def test_a_photo_over_the_pixel_cap_is_refused(tmp_path: Path, store: MediaStore) -> None:
    path = save(tmp_path, quadrants((1000, 1000)), "JPEG")
    with pytest.raises(TooManyPixels, match="1000 x 1000 pixels"):
        render(path, store, max_pixels=999_999)
    assert not store.public.exists()


def test_time_limit(tmp_path: Path, store: MediaStore) -> None:
    path = save(tmp_path, quadrants((2000, 1500)), "JPEG")
    with pytest.raises(TooSlow, match="rendering took longer than 0 s"):
        render(path, store, max_pixels=MAX_PIXELS, time_limit=0)


# Decompression bombs and memory, measured in a fresh process -------------------------------

MEASURE = """
import json, resource, sys, time
from pathlib import Path
from shared.photos.probe import ImageRefused
from shared.photos.store import MediaStore
from shared.photos.render import render
started = time.perf_counter()
try:
    result = render(Path(sys.argv[1]), MediaStore(Path(sys.argv[2])), max_pixels=50_000_000)
    outcome = [r.width for r in result.renditions]
except ImageRefused as e:
    outcome = f"{type(e).__name__}: {e}"
seconds = time.perf_counter() - started
# ru_maxrss would include the parent's pages from before exec; VmHWM is this program's own.
status = Path("/proc/self/status")
if status.exists():
    hwm = [line for line in status.read_text().splitlines() if line.startswith("VmHWM:")]
    peak_mb = int(hwm[0].split()[1]) / 1024
else:
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024  # macOS: bytes
print(json.dumps({"outcome": outcome, "seconds": seconds, "peak_mb": peak_mb}))
"""


def measure(path: Path, media: Path) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, str(path), str(media)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return json.loads(done.stdout)


@pytest.mark.parametrize(
    ("data", "size"),
    [
        (png_bomb(20_000), "20000 x 20000"),
        (jpeg_claiming(65_500, 65_500), "65500 x 65500"),
    ],
    ids=["png-400-megapixels", "jpeg-header-4-gigapixels"],
)
def test_decompression_bombs_are_refused_before_decoding(
    tmp_path: Path, data: bytes, size: str
) -> None:
    path = tmp_path / "bomb"
    path.write_bytes(data)
    assert len(data) < 100_000
    found = measure(path, tmp_path / "media")
    assert found["outcome"].startswith(f"TooManyPixels: photo is {size} pixels")
    assert found["seconds"] < 2
    assert found["peak_mb"] < 120  # decoding would need 400 MB at the very least


def test_50_megapixel_jpeg_renders_in_bounded_memory(tmp_path: Path) -> None:
    size = (8660, 5773)
    gradient = Image.linear_gradient("L").resize(size)
    photo = Image.merge("RGB", (gradient, gradient.transpose(Image.Transpose.ROTATE_180),
                                Image.new("L", size, 128)))  # fmt: skip
    path = tmp_path / "50mp.jpg"
    oriented(photo, 6).save(path, "JPEG", quality=90, exif=exif(6, gps=True))
    del photo, gradient
    found = measure(path, tmp_path / "media")
    per_format = len(OPAQUE)
    assert found["outcome"] == sorted([320, 640, 1024, 1600, 2560] * per_format)
    assert found["peak_mb"] < 300


ARENAS = """
import ctypes, sys, threading
from shared.photos.render import limit_malloc_arenas
if sys.argv[1] == "limited":
    limit_malloc_arenas()
def work():
    kept = [bytes(1000 + i) for i in range(2000)]  # malloc'd by each thread (not pymalloc)
threads = [threading.Thread(target=work) for _ in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
libc = ctypes.CDLL(None)
libc.fopen.restype = ctypes.c_void_p
out = libc.fopen(sys.argv[2].encode(), b"w")
libc.malloc_info(0, ctypes.c_void_p(out))
libc.fclose(ctypes.c_void_p(out))
print(open(sys.argv[2]).read().count("<heap nr="))
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc arenas")
def test_one_malloc_arena_for_every_thread(tmp_path: Path) -> None:
    # libvips' thread would otherwise get an arena of its own, and RSS keep its freed pages.
    counts = {}
    for mode in ("limited", "default"):
        done = subprocess.run(
            [sys.executable, "-c", ARENAS, mode, str(tmp_path / f"{mode}.xml")],
            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
            capture_output=True, text=True, check=True, timeout=60,
        )  # fmt: skip
        counts[mode] = int(done.stdout)
    assert counts["limited"] == 1
    assert counts["default"] > 1  # the test can tell


# Publishing as soon as a first page view can be drawn ----------------------------------------


@pytest.mark.usefixtures("worker")
async def test_an_article_publishes_with_its_first_renditions_and_the_rest_follow(
    api: Any, site: Any, admin: str
) -> None:
    """The article is published once each photo has one JPEG and one WebP width; AVIF and the
    other widths land afterwards, and the article's page, already cached, offers them then."""
    seed = demo_seed()["article"]
    await create_category(api, admin)
    article = {
        **text_only(seed),
        "body": '<p>Mở đầu.</p><img src="cid:a"><p>Kết.</p>',
        "images": [{"part": "a", "caption": "Ảnh lớn"}],
    }
    response = await api.post(
        "/api/v1/articles", data=multipart(article, {"a": jpeg(2400, 1600)}), headers=bearer(admin)
    )
    assert response.status == 202, await response.text()
    accepted = await response.json()
    published = await wait_status(api, admin, accepted["id"], "published")
    first = {(r["width"], r["format"]) for r in published["images"][0]["renditions"]}
    assert {(1024, "jpeg"), (1024, "webp")} <= first
    page_path = published["links"]["page"].removeprefix("http://bantin.test")
    await site.get(page_path)  # cached now, perhaps before the rest have landed
    widest = (2400, "avif" if AVIF_OUT else "webp")
    for _ in range(600):
        current = await api.get(f"/api/v1/articles/{accepted['id']}", headers=bearer(admin))
        renditions = (await current.json())["images"][0]["renditions"]
        if widest in {(r["width"], r["format"]) for r in renditions}:
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the other renditions never landed")
    assert len(renditions) == 5 * len(OPAQUE)  # 320, 640, 1024, 1600, 2400
    wanted = next(r for r in renditions if (r["width"], r["format"]) == widest)
    path = wanted["url"].removeprefix("http://bantin.test")
    for _ in range(100):  # the page is made anew as they land
        if path in await (await site.get(page_path)).text():
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the cached page never offered the renditions that came later")


@pytest.mark.usefixtures("worker")
async def test_a_first_view_never_waits_behind_another_articles_renditions(
    api: Any, admin: str, settings: Any
) -> None:
    """The renditions a first view does without (render_rest: seconds of CPU per photo) have a
    queue and a worker of their own. Article A has more photos than the other worker has
    processes; article B, sent once A is published (so A's render_rest tasks are waiting or
    running), gets its first view rendered before any of A's photos is complete. Had both
    shared a queue, A's render_rest tasks would hold every process and B's render would come
    after one of them."""
    await create_category(api, admin)
    seed = text_only(demo_seed()["article"])

    async def send(title: str, photos: list[bytes]) -> int:
        parts = {f"p{n}": data for n, data in enumerate(photos)}
        article = {**seed, "title": title, "images": [{"part": part} for part in parts]}
        response = await api.post(
            "/api/v1/articles", data=multipart(article, parts), headers=bearer(admin)
        )
        assert response.status == 202, await response.text()
        return int((await response.json())["id"])

    big = [jpeg(3000, 2000, colour=(60 * n, 120, 200)) for n in range(3)]
    first = await send("Bài A, ba ảnh lớn", big)
    await wait_status(api, admin, first, "published")
    second = await send("Bài B, gửi ngay sau", [jpeg(800, 600)])
    await wait_status(api, admin, second, "published")

    database_url, _ = settings.require_backends()

    async def photos() -> dict[int, list[dict[str, Any]]]:
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            cur = await conn.execute(
                "SELECT article_id, rendered_at, completed_at FROM images ORDER BY id"
            )
            found: dict[int, list[dict[str, Any]]] = {first: [], second: []}
            for article_id, rendered_at, completed_at in await cur.fetchall():
                found[article_id].append({"rendered": rendered_at, "completed": completed_at})
            return found

    for _ in range(3000):  # A's renditions, one after the other: a minute on a busy machine
        rows = await photos()
        if all(row["completed"] for row in rows[first]):
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("A's other renditions never landed")
    assert len(rows[first]) == 3 and len(rows[second]) == 1
    b_first_view = rows[second][0]["rendered"]
    assert b_first_view > max(row["rendered"] for row in rows[first])  # sent after A's
    assert b_first_view < min(row["completed"] for row in rows[first]), rows
