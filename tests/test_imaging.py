"""shared.photos.probe: what the ingest service decides about an upload from its first bytes and
its header, without decoding a pixel."""

from __future__ import annotations

import io
import pickle
import struct
import threading
import time
from pathlib import Path

import pytest
from PIL import GifImagePlugin, Image, features

from shared.photos import probe as imaging
from shared.photos.probe import (
    ALLOWED,
    ImageRefused,
    NotAccepted,
    Probe,
    TooManyPixels,
    Undecodable,
    accept,
    probe,
    sniff,
)
from tests.fixtures.images import (
    heic,
    heic_head,
    jpeg_claiming,
    png,
    png_bomb,
    quadrants,
    save_oriented,
)

AVIF = features.check("avif")
needs_avif = pytest.mark.skipif(not AVIF, reason="Pillow without AVIF")


def encoded(fmt: str, size: tuple[int, int] = (40, 30), **options: object) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (10, 120, 200)).save(out, fmt, **options)
    return out.getvalue()


def ftyp(major: bytes, *compatible: bytes) -> bytes:
    body = b"ftyp" + major + b"\x00\x00\x00\x00" + b"".join(compatible)
    return struct.pack(">I", 4 + len(body)) + body + b"\x00\x00\x00\x08free"


# sniff ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "pil_format", "options"),
    [
        ("jpeg", "JPEG", {}),
        ("jpeg", "JPEG", {"progressive": True}),
        ("png", "PNG", {}),
        ("gif", "GIF", {}),
        ("webp", "WEBP", {}),
        ("webp", "WEBP", {"lossless": True}),
        pytest.param("avif", "AVIF", {}, marks=needs_avif),
    ],
)
def test_sniff_knows_what_pillow_writes(fmt: str, pil_format: str, options: dict) -> None:
    assert sniff(encoded(pil_format, **options)[: imaging.HEAD_BYTES]) == fmt


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"GIF87a\x01\x00\x01\x00", "gif"),
        (b"RIFF\x00\x10\x00\x00WEBPVP8 ", "webp"),
        (ftyp(b"avif", b"avif", b"mif1", b"miaf", b"MA1B"), "avif"),
        (ftyp(b"avis", b"avis", b"msf1", b"miaf"), "avif"),
        (ftyp(b"mif1", b"mif1", b"avif"), "avif"),
        (ftyp(b"heic", b"mif1", b"heic"), "heic"),
        (ftyp(b"heix", b"mif1", b"heix"), "heic"),
        (ftyp(b"hevc", b"msf1", b"hevc"), "heic"),
        (ftyp(b"hevx", b"msf1"), "heic"),
        (ftyp(b"mif1", b"mif1", b"heic"), "heic"),
        (ftyp(b"msf1", b"msf1", b"hevc"), "heic"),
        (ftyp(b"mif1", b"mif1", b"miaf"), None),  # HEIF holding neither
        (ftyp(b"isom", b"isom", b"mp41"), None),  # an MP4 video
        (ftyp(b"qt  "), None),
        (b"RIFF\x00\x10\x00\x00WAVEfmt ", None),
        (b"\xff\xd8", None),  # too short to be a JPEG
        (b"", None),
        (b"<!DOCTYPE html><html><body>404</body></html>", None),
        (b'<svg xmlns="http://www.w3.org/2000/svg"/>', None),
    ],
)
def test_sniff_reads_magic_numbers_only(head: bytes, expected: str | None) -> None:
    assert sniff(head) == expected


def test_sniff_ignores_a_brand_past_the_ftyp_box() -> None:
    # "avif" appears in the next box, not among the compatible brands.
    head = ftyp(b"isom", b"mp41") + b"avif" * 4
    assert sniff(head) is None


def test_allowed_formats() -> None:
    assert ALLOWED[:4] == ("jpeg", "png", "webp", "gif")
    assert ("avif" in ALLOWED) is AVIF
    assert "heic" not in ALLOWED


# accept: refusals name what the file is ------------------------------------------------


@pytest.mark.parametrize(
    ("head", "message"),
    [
        (
            b"<!DOCTYPE html>\n<html lang='vi'><head><title>L\xe1\xbb\x97i</title>",
            "looks like HTML",
        ),
        (b"\xef\xbb\xbf  <html><body>Not found</body></html>", "looks like HTML"),
        (b'<svg xmlns="http://www.w3.org/2000/svg" width="10"/>', "SVG is not accepted"),
        (b'<?xml version="1.0"?>\n<!-- made by hand -->\n<svg xmlns="x"/>', "SVG is not accepted"),
        (b'<?xml version="1.0"?><rss version="2.0"></rss>', "looks like XML"),
        (heic_head(), "HEIC/HEIF photos are not accepted"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "PDF"),
        (b"%!PS-Adobe-3.0 EPSF-3.0\n", "PostScript/EPS is not accepted"),
        (b"8BPS\x00\x01\x00\x00", "PSD (Photoshop) is not accepted"),
        (b"II*\x00\x08\x00\x00\x00", "TIFF (or camera RAW) is not accepted"),
        (b"BM6\x00\x00\x00", "BMP is not accepted"),
        (b"PK\x03\x04\x14\x00", "ZIP archive"),
        (ftyp(b"isom", b"isom", b"mp41"), "video"),
        (b'{"error": "quota"}', "looks like JSON"),
        (b"Xin ch\xc3\xa0o, \xe1\xba\xa3nh \xe1\xbb\x9f \xc4\x91\xc3\xa2y", "looks like text"),
        (b"", "the file is empty"),
        (b"\x00\x01\x02\x03\x04\x05\x06\x07\x08", "unrecognised format (starts with 00 01 02"),
    ],
)
def test_accept_refuses_with_a_reason(head: bytes, message: str) -> None:
    with pytest.raises(NotAccepted) as caught:
        accept(head)
    assert message in str(caught.value)
    assert isinstance(caught.value, ImageRefused)


def test_accept_refuses_formats_pillow_can_read_but_we_do_not() -> None:
    for fmt, what in (("TIFF", "TIFF"), ("BMP", "BMP"), ("ICO", "ICO"), ("PPM", "unrecognised")):
        with pytest.raises(NotAccepted, match=what):
            accept(encoded(fmt, (16, 16))[: imaging.HEAD_BYTES])


def test_accept_returns_the_format() -> None:
    assert accept(encoded("JPEG")) == "jpeg"
    assert accept(encoded("PNG")) == "png"


def test_an_html_page_named_jpg_is_refused_by_its_bytes(tmp_path: Path) -> None:
    page = tmp_path / "photo.jpg"
    page.write_bytes(b"<!doctype html><html><body>502 Bad Gateway</body></html>")
    with pytest.raises(NotAccepted, match="not an image: looks like HTML"):
        probe(page, max_pixels=50_000_000)


# probe -------------------------------------------------------------------------------------


def test_probe_jpeg(tmp_path: Path) -> None:
    path = tmp_path / "a"
    path.write_bytes(encoded("JPEG", (640, 480)))
    assert probe(path, max_pixels=50_000_000) == Probe("jpeg", 640, 480, 640, 480, 1, False)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_probe_gives_the_upright_size(tmp_path: Path, orientation: int) -> None:
    path = save_oriented(tmp_path / "o.jpg", quadrants((120, 80)), orientation)
    found = probe(path, max_pixels=50_000_000)
    assert found.orientation == orientation
    assert (found.upright_width, found.upright_height) == (120, 80)
    stored = (80, 120) if orientation >= 5 else (120, 80)
    assert (found.width, found.height) == stored


def test_probe_png_webp_gif(tmp_path: Path) -> None:
    for fmt, pil in (("png", "PNG"), ("webp", "WEBP"), ("gif", "GIF")):
        path = tmp_path / fmt
        path.write_bytes(encoded(pil, (33, 21)))
        assert probe(path, max_pixels=10_000) == Probe(fmt, 33, 21, 33, 21, 1, False)


@needs_avif
def test_probe_avif(tmp_path: Path) -> None:
    path = tmp_path / "a.avif"
    path.write_bytes(encoded("AVIF", (64, 48)))
    assert probe(path, max_pixels=10_000) == Probe("avif", 64, 48, 64, 48, 1, False)


def test_probe_tells_animations(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (20, 20), c) for c in ((200, 0, 0), (0, 200, 0), (0, 0, 200))]
    for fmt in ("GIF", "WEBP", "PNG"):
        path = tmp_path / f"anim.{fmt}"
        frames[0].save(path, fmt, save_all=True, append_images=frames[1:], duration=100)
        assert probe(path, max_pixels=10_000).animated, fmt
        frames[0].save(path, fmt)
        assert not probe(path, max_pixels=10_000).animated, fmt


def test_probe_does_not_read_through_a_gif_to_count_its_frames(tmp_path: Path) -> None:
    # 200,000 one-pixel frames: n_frames reads them all, is_animated stops at the second.
    frame = io.BytesIO()
    Image.new("P", (1, 1)).save(frame, "GIF")
    data = frame.getvalue()
    start = 13 + (3 << ((data[10] & 7) + 1) if data[10] & 0x80 else 0)  # after the palette
    while data[start] == 0x21:  # extensions, up to the image descriptor (0x2c)
        start += 2
        while data[start]:
            start += data[start] + 1
        start += 1
    path = tmp_path / "many.gif"
    path.write_bytes(data[:start] + data[start:-1] * 200_000 + b"\x3b")
    with Image.open(path) as im:
        assert im.n_frames == 200_000  # the file really is that
    reached = []
    real = GifImagePlugin.GifImageFile._seek

    def _seek(im: GifImagePlugin.GifImageFile, frame: int, *args: bool) -> None:
        reached.append(frame)
        real(im, frame, *args)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(GifImagePlugin.GifImageFile, "_seek", _seek)
        assert probe(path, max_pixels=10_000).animated
    assert max(reached) <= 1


def test_probe_mpo(tmp_path: Path) -> None:
    path = tmp_path / "mpo"
    first, second = Image.new("RGB", (64, 48)), Image.new("RGB", (64, 48), (9, 9, 9))
    first.save(path, "MPO", save_all=True, append_images=[second])
    assert probe(path, max_pixels=10_000) == Probe("jpeg", 64, 48, 64, 48, 1, True)


def test_probe_refuses_too_many_pixels_from_the_header(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    path.write_bytes(png(8000, 7000, 8, 2, None))  # no pixel data at all: only the header
    with pytest.raises(TooManyPixels) as caught:
        probe(path, max_pixels=50_000_000)
    error = caught.value
    assert (error.width, error.height, error.max_pixels) == (8000, 7000, 50_000_000)
    message = "photo is 8000 x 7000 pixels (56.0 megapixels); the limit is 50.0 megapixels"
    assert str(error) == message
    assert probe(path, max_pixels=56_000_000).width == 8000  # exactly at the limit is fine


@pytest.mark.parametrize(
    ("data", "size"),
    [
        (png(100_000, 100_000, 1, 0, None), (100_000, 100_000)),
        (png_bomb(20_000), (20_000, 20_000)),
        (jpeg_claiming(65_500, 65_000), (65_500, 65_000)),
    ],
    ids=["png-header-100000", "png-bomb-20000", "jpeg-header-65500"],
)
def test_bombs_get_our_message_not_pillows(tmp_path: Path, data: bytes, size: tuple) -> None:
    # Far beyond Image.MAX_IMAGE_PIXELS: Image.open itself would raise DecompressionBombError.
    path = tmp_path / "bomb"
    path.write_bytes(data)
    with pytest.raises(Image.DecompressionBombError):
        Image.open(path).close()
    started = time.perf_counter()
    with pytest.raises(TooManyPixels) as caught:
        probe(path, max_pixels=50_000_000)
    assert time.perf_counter() - started < 1
    assert (caught.value.width, caught.value.height) == size


def test_probe_is_not_held_back_by_pillows_warning_limit(tmp_path: Path) -> None:
    # 100 MP is past Pillow's DecompressionBombWarning (an error under this suite's
    # filterwarnings); a site that allows it must not be refused or warned at.
    path = tmp_path / "large.png"
    path.write_bytes(png(10_000, 10_000, 8, 0, None))
    before = Image.MAX_IMAGE_PIXELS
    assert probe(path, max_pixels=120_000_000).width == 10_000
    assert before == Image.MAX_IMAGE_PIXELS  # Pillow's global limit is left alone


def test_probe_in_threads_leaves_pillows_limit_alone(tmp_path: Path) -> None:
    path = tmp_path / "large.png"
    path.write_bytes(png(10_000, 10_000, 8, 0, None))
    before = Image.MAX_IMAGE_PIXELS
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(20):
                with pytest.raises(TooManyPixels):
                    probe(path, max_pixels=1_000_000)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert before == Image.MAX_IMAGE_PIXELS


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "not a valid PNG file"),
        (b"\xff\xd8\xff\xe0" + b"\x00" * 40, "not a valid JPEG file"),
        (b"GIF89a" + b"\x00", "not a valid GIF file"),
        (b"RIFF\x10\x00\x00\x00WEBPVP8 \x00\x00", "not a valid WebP file"),
        (png(0, 10, 8, 0, None), "not a valid PNG file"),
    ],
)
def test_probe_refuses_a_header_pillow_cannot_parse(
    tmp_path: Path, data: bytes, message: str
) -> None:
    path = tmp_path / "x"
    path.write_bytes(data)
    with pytest.raises(Undecodable, match=message):
        probe(path, max_pixels=50_000_000)


def test_probe_uses_only_the_sniffed_formats_parser(tmp_path: Path) -> None:
    # JPEG magic followed by a PNG: the JPEG parser refuses it; no other parser is tried.
    path = tmp_path / "x"
    path.write_bytes(b"\xff\xd8\xff" + encoded("PNG"))
    with pytest.raises(Undecodable, match="not a valid JPEG file"):
        probe(path, max_pixels=50_000_000)


@needs_avif
def test_probe_refuses_a_heic_dressed_as_avif(tmp_path: Path) -> None:
    path = tmp_path / "x"
    path.write_bytes(ftyp(b"avif", b"avif", b"mif1") + b"\x00" * 200)
    with pytest.raises(Undecodable, match="not a valid AVIF file"):
        probe(path, max_pixels=50_000_000)


def test_probe_refuses_a_webp_canvas_past_pillows_own_bomb_check(tmp_path: Path) -> None:
    # Pillow's WebP parser applies its global limit itself (DecompressionBombError, not one of
    # ours): a 20000 x 20000 canvas around one 8 x 8 frame.
    frame = encoded("WEBP", (8, 8), lossless=True)[12:]
    side = (20_000 - 1).to_bytes(3, "little")
    body = b"WEBP" + b"VP8X" + struct.pack("<I", 10) + bytes(4) + side + side + frame
    path = tmp_path / "x"
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    with pytest.raises(Undecodable, match=r"^not a valid WebP file: Image size \(400000000 pix"):
        probe(path, max_pixels=50_000_000)


@needs_avif
def test_probe_refuses_an_avif_whose_primary_item_is_missing(tmp_path: Path) -> None:
    # Pillow's AVIF parser raises RuntimeError for this one.
    data = bytearray(encoded("AVIF", (8, 8)))
    at = data.find(b"pitm")
    data[at + 8 : at + 10] = struct.pack(">H", 7)  # no item 7
    path = tmp_path / "x"
    path.write_bytes(bytes(data))
    with pytest.raises(Undecodable, match=r"^not a valid AVIF file: .*Missing or empty image item"):
        probe(path, max_pixels=50_000_000)


@pytest.mark.parametrize(
    ("boxes", "message"),
    [
        (struct.pack(">I4sQ", 1, b"free", 0), "a box of 0 bytes"),  # would seek backwards
        (struct.pack(">I4s", 8, b"free") * 2000, "no metadata in its first 1000 boxes"),
    ],
    ids=["64-bit-size-too-small", "endless-boxes"],
)
def test_reading_heif_items_always_ends(boxes: bytes, message: str) -> None:
    data = ftyp(b"avif", b"avif", b"mif1") + boxes
    with pytest.raises(Undecodable, match=message):
        imaging._heif_extents(io.BytesIO(data))


def test_refusals_survive_pickling() -> None:
    # Celery carries a task's exception between processes.
    for error in (
        TooManyPixels(9000, 9000, 50_000_000),
        Undecodable("truncated JPEG: image file is truncated"),
        NotAccepted("SVG is not accepted"),
    ):
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error)
        assert str(copy) == str(error)
    assert pickle.loads(pickle.dumps(TooManyPixels(1, 2, 1))).height == 2


# HEIC ---------------------------------------------------------------------------------------


def test_premise_libvips_here_cannot_decode_heic() -> None:
    """Why HEIC (iPhones' default) is refused: the libvips of the pyvips wheel reads the HEIF
    container but has no HEVC decoder. If this test fails, a newer libvips decodes HEIC: the
    product should then accept it (probe.ALLOWED, render's loaders) instead of telling people
    to export JPEG."""
    import pyvips

    photo = pyvips.Image.heifload_buffer(heic(64, 48))
    # The fixture is a sound HEIC container: libvips reads its header...
    assert (photo.width, photo.height, photo.get("heif-compression")) == (64, 48, "hevc")
    # ...and stops at the codec, before any of its bytes is decoded.
    with pytest.raises(pyvips.Error, match=r"has not been built in: HEVC"):
        photo.avg()


def test_a_whole_heic_is_refused_before_decoding(tmp_path: Path) -> None:
    path = tmp_path / "IMG_0001.HEIC"
    path.write_bytes(heic())
    assert sniff(path.read_bytes()[:64]) == "heic"
    with pytest.raises(NotAccepted, match="export the photo as JPEG"):
        probe(path, max_pixels=10_000_000)
