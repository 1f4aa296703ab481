"""The child process of the `images` benchmark: one full rendition set of one photo, measured.

Run by path, never imported through the `bench` package (which would load aiohttp and the rest
of the harness into the process being measured):

    python bench/image_worker.py ours SRC OUT [--worker-imports] [--max-pixels N]
    python bench/image_worker.py ours-vips-avif SRC OUT
    python bench/image_worker.py vips SRC OUT
    python bench/image_worker.py pixels SRC OUT

(with `python -P`, so that bench/ itself is not on sys.path). `warm_up` and `render_copy` are
the tasks of the benchmark's process pool, which imports this module as `bench.image_worker`.

`ours` is `shared.photos.render.render` into a `MediaStore` at OUT; `ours-vips-avif` is the same
with every AVIF at the reference's settings (quality 50, effort 4, instead of effort 3 at
quality 47 above 1024 wide), to show what that choice is worth; `vips` is the reference: for
each size, pyvips `thumbnail` from the file (shrink-on-load), then JPEG, WebP and AVIF
with the settings in REFERENCE, written to OUT. `pixels` writes the reference's thumbnails
losslessly (PNG), for the SSIM of each pipeline's outputs against the same pixels; it is not
timed by the benchmark.
`--worker-imports` first imports the modules a Celery worker child
has loaded (the app and every task module), so that the peak RSS is the one of a worker
process, not of a bare interpreter.

Prints one JSON object on stdout: the CPU time (`time.process_time`, every thread of the process,
around the pipeline only: interpreter start and imports excluded), the wall time, VmRSS before
and VmHWM (peak RSS) after, and every output (format, width, height, bytes, file).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

WIDTHS = (320, 640, 1024, 1600)
MAX_SIDE = 2560
# libvips' own defaults, spelled out: JPEG Q75 (4:2:0 below Q90, no Huffman optimisation),
# WebP Q75 effort 4, AVIF (libheif + libaom) Q50 effort 4. shared/photos/render.py copies them.
REFERENCE: dict[str, dict[str, Any]] = {
    "jpeg": {"Q": 75, "optimize_coding": False, "subsample_mode": "auto", "keep": "none"},
    "webp": {"Q": 75, "effort": 4, "keep": "none"},
    "avif": {"Q": 50, "effort": 4, "compression": "av1", "keep": "none"},
}
WORKER_MODULES = (
    "workers.app",
    "workers.publishing",
    "workers.feeds",
    "workers.photos",
    "workers.counters",
)


def status_kb(field: str) -> int | None:
    """A `kB` line of /proc/self/status (VmRSS, VmHWM), or None off Linux."""
    try:
        with open("/proc/self/status") as fp:
            for line in fp:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def default_max_pixels() -> int:
    from shared.settings import LIMITS

    return LIMITS["max_pixels"][1]


def ours(src: Path, out: Path, max_pixels: int) -> list[dict[str, Any]]:
    from shared.photos.render import render
    from shared.photos.store import MediaStore

    store = MediaStore(out)
    rendered = render(src, store, max_pixels=max_pixels, time_limit=600.0)
    return [
        {
            "format": r.format,
            "width": r.width,
            "height": r.height,
            "bytes": r.bytes,
            "file": str(store.public_file(r.path)),
        }
        for r in rendered.renditions
    ]


def vips(
    src: Path,
    out: Path,
    formats: tuple[str, ...] = ("jpeg", "webp", "avif"),
) -> list[dict[str, Any]]:
    import pyvips

    pyvips.cache_set_max(0)  # every size decodes the file again, as a fresh request would
    head = pyvips.Image.new_from_file(str(src))
    scale = min(1.0, MAX_SIDE / max(head.width, head.height))
    capped_width = round(head.width * scale)
    out.mkdir(parents=True, exist_ok=True)
    outputs: list[dict[str, Any]] = []
    boxes = [(MAX_SIDE, MAX_SIDE)] + [(w, 10_000_000) for w in WIDTHS if w < capped_width]
    for width, height in boxes:
        im = pyvips.Image.thumbnail(str(src), width, height=height, size="down")
        im = im.copy_memory()  # render once, then encode three times
        for fmt in formats:
            if fmt == "png":
                data = im.pngsave_buffer(compression=1, keep="none")
            else:
                saver = "heifsave_buffer" if fmt == "avif" else f"{fmt}save_buffer"
                data = getattr(im, saver)(**REFERENCE[fmt])
            path = out / f"{im.width}x{im.height}.{fmt}"
            path.write_bytes(data)
            outputs.append(
                {
                    "format": fmt,
                    "width": im.width,
                    "height": im.height,
                    "bytes": len(data),
                    "file": str(path),
                }
            )
    return outputs


def warm_up(pause: float) -> int:
    """A task for a fresh pool process: import the renderer, wait a little (so that every
    process of the pool takes one), return the process id."""
    import shared.photos.render  # noqa: F401

    time.sleep(pause)
    return os.getpid()


def render_copy(job: tuple[str, str]) -> tuple[float, float]:
    """A pool task: render the photo at job[0] into a new store at job[1]; (CPU s, wall s)."""
    from shared.photos.render import render
    from shared.photos.store import MediaStore

    c0, t0 = time.process_time(), time.perf_counter()
    render(
        Path(job[0]), MediaStore(Path(job[1])), max_pixels=default_max_pixels(), time_limit=600.0
    )
    return time.process_time() - c0, time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("pipeline", choices=("ours", "ours-vips-avif", "vips", "pixels"))
    parser.add_argument("src", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--max-pixels", type=int, help="default: BANTIN_MAX_PIXELS' default")
    parser.add_argument("--worker-imports", action="store_true")
    args = parser.parse_args()
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    if args.worker_imports:
        for name in WORKER_MODULES:
            importlib.import_module(name)
    if args.pipeline.startswith("ours"):
        import shared.photos.render  # (imports are not part of the measured time)

        if args.pipeline == "ours-vips-avif":
            same = {k: REFERENCE["avif"][k] for k in ("Q", "effort")}
            shared.photos.render.AVIF_OPTIONS = ((2**62, same),)
    else:
        import pyvips  # noqa: F401

    rss_before = status_kb("VmRSS")
    c0, t0 = time.process_time(), time.perf_counter()
    if args.pipeline.startswith("ours"):
        outputs = ours(args.src, args.out, args.max_pixels or default_max_pixels())
    elif args.pipeline == "vips":
        outputs = vips(args.src, args.out)
    else:
        outputs = vips(args.src, args.out, ("png",))
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    json.dump(
        {
            "pipeline": args.pipeline,
            "cpu_s": cpu,
            "wall_s": wall,
            "rss_before_kb": rss_before,
            "peak_rss_kb": status_kb("VmHWM"),
            "vips_concurrency": os.environ.get("VIPS_CONCURRENCY"),
            "outputs": outputs,
        },
        sys.stdout,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
