"""Photo renditions (issue 4): CPU time against a libvips reference, sizes and SSIM against it,
photos per second on every core, and the peak RSS of a worker rendering a 50 MP JPEG.

Input: bench/data/bench-12mp.jpg (4000 x 3000). The full rendition set is what
`shared.photos.render.render` makes: widths 320, 640, 1024, 1600 and the capped original (longest
side 2560), each as JPEG, WebP and AVIF, written to a `MediaStore`.

- CPU time: each repetition renders the set once with ours and once with the reference, each
  in a fresh subprocess (bench/image_worker.py), ours first on even repetitions and the
  reference first on odd ones. The figure is `time.process_time()` inside the child around the
  pipeline (all threads; interpreter start and imports excluded); the child's whole-process CPU
  (getrusage of the parent's children, imports included) is reported too. Ratio = ours / vips
  per repetition; `ratios.cpu_vs_vips` is their median. Goal: at most 0.8.
- Not in --quick: each round also renders with ours but every AVIF at the reference's settings
  (Q50, effort 4; `ratios.cpu_same_avif_vs_vips`), since the whole difference is there: ours
  renders with libvips too (the same `thumbnail` calls, so the same pixels).
- The reference: pyvips `thumbnail` from the file for each size (shrink-on-load; `height` huge
  for the widths, 2560 x 2560 `size=down` for the capped original), then jpegsave Q75 (4:2:0,
  no Huffman optimisation), webpsave Q75 effort 4, heifsave AV1 Q50 effort 4 (libvips' own
  defaults, which shared/photos/render.py copies; its AVIFs above 1024 wide use effort 3, libaom
  speed 6, at Q47 to match their bytes and SSIM), all metadata stripped, files written.
  VIPS_CONCURRENCY=1: a worker renders one photo per core, and ours sets libvips to one thread
  too. When pyvips cannot be imported or this libvips cannot write AVIF, the reference is
  reported as skipped (`pip install pyvips pyvips-binary`).
- Outputs: each of ours against the reference's output of the same width and format: bytes
  (goal: within 10%) and SSIM (bench/ssim.py: grayscale, 11 x 11 Gaussian window, sigma 1.5;
  a 1-pixel height difference is resized away; goal: at least 0.97). Needs numpy. Both are
  lossy, so for context each row also has the SSIM of ours and of the reference's output
  against the reference's lossless thumbnail of that size (`ssim_to_pixels`,
  `ref_ssim_to_pixels`; the same pixels for both; not in --quick): what each encoding loses.
  The SSIMs are computed by a process pool (nothing is being timed then).
- Photos per second: a pool of os.cpu_count() processes (the worker's default concurrency),
  started and warmed up first, renders copies of the input, each into its own store.
- Peak RSS: a 50 MP JPEG (the input upscaled to 8660 x 5773 with light noise, q90; made once
  and kept in the temporary folder) rendered in a fresh subprocess that first imports what a
  Celery worker child has loaded (the app and every task module); VmHWM from /proc/self/status.
  Goal: under 300 MB (10^6 bytes, the stricter reading).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import multiprocessing
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from PIL import Image, ImageChops

from bench.image_worker import render_copy, warm_up
from bench.registry import Context, Results, benchmark
from bench.stats import ratio
from shared.settings import LIMITS

ROOT = Path(__file__).resolve().parent.parent.parent
INPUT = ROOT / "bench" / "data" / "bench-12mp.jpg"
WORKER = ROOT / "bench" / "image_worker.py"
BIG_SIZE = (8660, 5773)  # 49,994,180 pixels: just under BANTIN_MAX_PIXELS' default (50 M)
BIG_VERSION = "1"  # change when _make_big changes, so that a cached file is not reused
VIPS_ENV = {"VIPS_CONCURRENCY": "1"}
CHILD_TIMEOUT = 600.0

GOAL_CPU_RATIO = 0.8
GOAL_BYTES = 0.10
GOAL_SSIM = 0.97
GOAL_RSS_MB = 300.0
INSTALL_VIPS = "pip install pyvips pyvips-binary"


class ChildFailed(RuntimeError):
    pass


@benchmark(
    "images",
    description="12 MP JPEG -> full rendition set: CPU / libvips reference, bytes and SSIM vs it,"
    " photos/s on all cores, peak RSS at 50 MP",
)
def images(ctx: Context) -> Results:
    repetitions = ctx.pick(5, 1)
    photos = ctx.pick(8, 2)
    procs = os.cpu_count() or 2
    scratch = Path(tempfile.mkdtemp(prefix="bantin-bench-images-"))
    try:
        vips_version, why_not = _vips_available()
        cpu = _cpu(
            scratch,
            repetitions,
            with_vips=why_not is None,
            same_avif=not ctx.quick and why_not is None,
        )
        reference: dict[str, Any] = {
            "status": "ok" if why_not is None else "skipped",
            "libvips": vips_version,
            "vips_concurrency": VIPS_ENV["VIPS_CONCURRENCY"],
        }
        if why_not is not None:
            reference["reason"] = why_not
        outputs = _compare(
            scratch, cpu.pop("first_outputs"), reference, procs, to_pixels=not ctx.quick
        )
        throughput = _throughput(scratch, procs, photos)
        peak = _peak_rss(scratch, with_vips=why_not is None and not ctx.quick)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    ratios = cpu["ratios_per_run"]
    median_ratio = statistics.median(ratios) if ratios else None
    quality = outputs["summary"]
    return {
        "params": {
            "input": str(INPUT.relative_to(ROOT)),
            "input_px": "x".join(map(str, _size(INPUT))),
            "repetitions": repetitions,
            "pool_processes": procs,
            "pool_photos": photos,
            "big_px": "x".join(map(str, BIG_SIZE)),
            "libvips": vips_version,
            "vips_concurrency": VIPS_ENV["VIPS_CONCURRENCY"],
            "max_pixels": LIMITS["max_pixels"][1],
        },
        "ratios": {
            # ours / vips, CPU time of the pipeline, median of the per-repetition ratios
            "cpu_vs_vips": median_ratio,
            "cpu_vs_vips_worst": max(ratios) if ratios else None,
            # the same with the whole child process (interpreter start and imports included)
            "process_cpu_vs_vips": ratio(
                _median(cpu["ours_process_cpu_s"]), _median(cpu.get("vips_process_cpu_s", []))
            ),
            # ours with every AVIF at vips' settings (Q50, speed 5), median per round (not in
            # --quick): the part of the difference that is not the AVIF speed/quality choice
            "cpu_same_avif_vs_vips": _median(cpu["same_avif_ratios_per_run"]),
        },
        "goals": {
            "cpu_ratio_at_most_0.8": None
            if median_ratio is None
            else median_ratio <= GOAL_CPU_RATIO,
            "bytes_within_10pct": quality.get("all_bytes_within"),
            "ssim_at_least_0.97": quality.get("all_ssim_at_least"),
            "peak_rss_under_300mb": peak["ours_mb"] < GOAL_RSS_MB,
        },
        "cpu": {
            "ours_median_s": _median(cpu["ours_cpu_s"]),
            "vips_median_s": _median(cpu.get("vips_cpu_s", [])),
            "ours_same_avif_median_s": _median(cpu.get("ours_vips_avif_cpu_s", [])),
            "ours_wall_median_s": _median(cpu["ours_wall_s"]),
            "vips_wall_median_s": _median(cpu.get("vips_wall_s", [])),
            "ours_process_median_s": _median(cpu["ours_process_cpu_s"]),
            "vips_process_median_s": _median(cpu.get("vips_process_cpu_s", [])),
        },
        "cpu_ratio_runs": ratios or None,
        "quality": quality,
        "throughput": throughput,
        "peak_rss": peak,
        "reference": reference,
        "ours_cpu_s": cpu["ours_cpu_s"],
        "vips_cpu_s": cpu.get("vips_cpu_s") or None,
        "ours_same_avif_cpu_s": cpu.get("ours_vips_avif_cpu_s") or None,
        "outputs": outputs["rows"],
    }


# --- the children ---------------------------------------------------------------------------


def _child(pipeline: str, src: Path, out: Path, *extra: str) -> dict[str, Any]:
    """Run bench/image_worker.py once; its JSON plus `process_cpu_s` (user + system time of
    the whole child, from getrusage of this process's waited-for children)."""
    env = {**os.environ, **VIPS_ENV} if pipeline == "vips" else dict(os.environ)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    # -P: the script's folder (bench/) is not put on sys.path, so nothing there shadows a module.
    proc = subprocess.run(
        [sys.executable, "-P", str(WORKER), pipeline, str(src), str(out), *extra],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=CHILD_TIMEOUT,
        check=False,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        raise ChildFailed(f"{pipeline} on {src.name} exited with {proc.returncode}: {tail}")
    result: dict[str, Any] = json.loads(proc.stdout)
    result["process_cpu_s"] = (after.ru_utime + after.ru_stime) - (
        before.ru_utime + before.ru_stime
    )
    return result


def _vips_available() -> tuple[str | None, str | None]:
    """(libvips version, None) when the reference can run here, else (None, why not)."""
    if importlib.util.find_spec("pyvips") is None:
        return None, f"pyvips is not installed: {INSTALL_VIPS}"
    # In a child: importing pyvips loads libvips, which this process does not need.
    code = (
        "import pyvips\n"
        "print(pyvips.version(0), pyvips.version(1), pyvips.version(2), flush=True)\n"
        "pyvips.Image.black(16, 16, bands=3).heifsave_buffer(compression='av1')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    version = ".".join(proc.stdout.split()) or None
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["?"])[-1]
        if version is None:
            return None, f"pyvips cannot be imported ({last}): {INSTALL_VIPS}"
        return version, f"this libvips cannot write AVIF ({last}): {INSTALL_VIPS}"
    return version, None


def _cpu(scratch: Path, repetitions: int, *, with_vips: bool, same_avif: bool) -> dict[str, Any]:
    """`repetitions` rounds of ours and vips (and ours with vips' AVIF settings when
    `same_avif`), alternating which goes first; per-round ratios to vips."""
    pipelines = ["ours"] + (["vips"] if with_vips else []) + (["ours_vips_avif"] * same_avif)
    series: dict[str, list[float]] = {
        f"{p}_{m}": [] for p in pipelines for m in ("cpu_s", "wall_s", "process_cpu_s")
    }
    ratios: list[float] = []
    same_avif_ratios: list[float] = []
    first: dict[str, list[dict[str, Any]]] = {}
    for i in range(repetitions):
        cpu: dict[str, float] = {}
        for pipeline in pipelines if i % 2 == 0 else reversed(pipelines):
            out = scratch / f"{pipeline}-{i}"
            result = _child(pipeline.replace("_", "-"), INPUT, out)
            cpu[pipeline] = result["cpu_s"]
            for metric in ("cpu_s", "wall_s", "process_cpu_s"):
                series[f"{pipeline}_{metric}"].append(result[metric])
            if i == 0 and pipeline != "ours_vips_avif":
                first[pipeline] = result["outputs"]  # kept for the comparison
            else:
                shutil.rmtree(out, ignore_errors=True)
        if "vips" in cpu:
            ratios.append(cpu["ours"] / cpu["vips"])
            if "ours_vips_avif" in cpu:
                same_avif_ratios.append(cpu["ours_vips_avif"] / cpu["vips"])
    return {
        **series,
        "ratios_per_run": ratios,
        "same_avif_ratios_per_run": same_avif_ratios,
        "first_outputs": first,
    }


# --- outputs against the reference ----------------------------------------------------------


def _compare(
    scratch: Path,
    first: dict[str, list[dict[str, Any]]],
    reference: dict[str, Any],
    procs: int,
    *,
    to_pixels: bool,
) -> dict[str, Any]:
    """Each of our outputs against the reference's of the same format and width: bytes, and
    SSIM (the goal). For context (`to_pixels`), the SSIM of both pipelines' outputs against the
    reference's lossless thumbnails (the same pixels for both): what each encoding loses."""
    ours = first.get("ours", [])
    if "vips" not in first:
        alone = [{k: o[k] for k in ("format", "width", "height", "bytes")} for o in ours]
        return {"summary": {"status": "skipped (no reference)"}, "rows": alone}
    theirs = {(o["format"], o["width"]): o for o in first["vips"]}
    rows: list[dict[str, Any]] = []
    for mine in ours:
        other = theirs.get((mine["format"], mine["width"]))
        row: dict[str, Any] = {
            "format": mine["format"],
            "width": mine["width"],
            "height": mine["height"],
            "bytes": mine["bytes"],
        }
        if other is None:
            row["reference"] = "missing"
        else:
            row["ref_height"] = other["height"]
            row["ref_bytes"] = other["bytes"]
            row["bytes_diff_pct"] = (mine["bytes"] / other["bytes"] - 1) * 100
            row["_files"] = (mine["file"], other["file"])
        rows.append(row)
    matched = [r for r in rows if "ref_bytes" in r]
    summary: dict[str, Any] = {
        "outputs": len(rows),
        "matched": len(matched),
        "unmatched_ours": len(rows) - len(matched),
        "unmatched_reference": len(theirs) - len(matched),
    }
    if matched:
        worst = max(matched, key=lambda r: abs(r["bytes_diff_pct"]))
        summary["worst_bytes_diff_pct"] = worst["bytes_diff_pct"]
        summary["worst_bytes_at"] = f"{worst['format']} {worst['width']}"
        summary["bytes_total_diff_pct"] = (
            sum(r["bytes"] for r in matched) / sum(r["ref_bytes"] for r in matched) - 1
        ) * 100
        summary["all_bytes_within"] = len(matched) == len(rows) == len(theirs) and all(
            abs(r["bytes_diff_pct"]) <= GOAL_BYTES * 100 for r in matched
        )
    try:
        from bench.ssim import ssim_files
    except ImportError as err:
        why = f"SSIM needs numpy ({err}): pip install numpy"
        summary.update(ssim=why, all_ssim_at_least=None)
        reference["ssim"] = why
        for row in rows:
            row.pop("_files", None)
        return {"summary": summary, "rows": rows}

    pixels: dict[int, str] = {}
    if to_pixels:
        made = _child("pixels", INPUT, scratch / "pixels")["outputs"]
        pixels = {o["width"]: o["file"] for o in made}
    jobs: list[tuple[str, str]] = []
    for row in matched:
        mine_file, ref_file = row["_files"]
        jobs.append((mine_file, ref_file))
        if row["width"] in pixels:
            jobs += [(pixels[row["width"]], mine_file), (pixels[row["width"]], ref_file)]
    with _pool(min(procs, len(jobs))) as pool:
        values = iter(list(pool.map(ssim_files, jobs)))
    for row in matched:
        row.pop("_files")
        row["ssim"] = next(values)
        if row["width"] in pixels:
            row["ssim_to_pixels"] = next(values)
            row["ref_ssim_to_pixels"] = next(values)
    lowest = min(matched, key=lambda r: r["ssim"])
    summary["min_ssim"] = lowest["ssim"]
    summary["min_ssim_at"] = f"{lowest['format']} {lowest['width']}"
    summary["ssim_below_goal"] = sum(r["ssim"] < GOAL_SSIM for r in matched)
    summary["all_ssim_at_least"] = len(matched) == len(rows) and all(
        r["ssim"] >= GOAL_SSIM for r in matched
    )
    # Context: ours minus the reference's SSIM against the same lossless thumbnail (negative:
    # our encoding loses more than the reference's).
    deltas = [r for r in matched if "ssim_to_pixels" in r]
    if deltas:
        least = min(deltas, key=lambda r: r["ssim_to_pixels"] - r["ref_ssim_to_pixels"])
        summary["to_pixels_worst_delta"] = least["ssim_to_pixels"] - least["ref_ssim_to_pixels"]
        summary["to_pixels_worst_at"] = f"{least['format']} {least['width']}"
        summary["to_pixels_mean_delta"] = statistics.fmean(
            r["ssim_to_pixels"] - r["ref_ssim_to_pixels"] for r in deltas
        )
    return {"summary": summary, "rows": rows}


# --- photos per second on every core --------------------------------------------------------


def _throughput(scratch: Path, procs: int, photos: int) -> dict[str, Any]:
    folder = scratch / "pool"
    folder.mkdir()
    jobs = []
    for i in range(photos):
        copy = folder / f"photo-{i}.jpg"
        shutil.copyfile(INPUT, copy)
        jobs.append((str(copy), str(folder / f"store-{i}")))
    with _pool(procs) as pool:
        # Start every process and import the renderer before the clock starts.
        list(pool.map(warm_up, [0.5] * procs))
        t0 = time.perf_counter()
        done = list(pool.map(render_copy, jobs))
        wall = time.perf_counter() - t0
    return {
        "photos_per_second": photos / wall,
        "wall_s": wall,
        "photo_wall_median_s": statistics.median(w for _, w in done),
        "photo_cpu_median_s": statistics.median(c for c, _ in done),
        "processes": procs,
        "photos": photos,
    }


# --- peak RSS at 50 MP ----------------------------------------------------------------------


def _peak_rss(scratch: Path, *, with_vips: bool) -> dict[str, Any]:
    big = _big_input()
    mine = _child("ours", big, scratch / "big-ours", "--worker-imports")
    result: dict[str, Any] = {
        "ours_mb": mine["peak_rss_kb"] * 1024 / 1e6,
        "ours_before_render_mb": mine["rss_before_kb"] * 1024 / 1e6,
        "ours_render_cpu_s": mine["cpu_s"],
        "ours_render_wall_s": mine["wall_s"],
        "input_bytes": big.stat().st_size,
    }
    if with_vips:  # for comparison only (not in --quick): the same pipeline in pyvips
        theirs = _child("vips", big, scratch / "big-vips")
        result["vips_mb"] = theirs["peak_rss_kb"] * 1024 / 1e6
        result["vips_render_cpu_s"] = theirs["cpu_s"]
    return result


def _big_input() -> Path:
    """The 50 MP JPEG, made once from the input and kept in the temporary folder."""
    digest = hashlib.sha256(INPUT.read_bytes() + BIG_VERSION.encode()).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / f"bantin-bench-50mp-{digest}.jpg"
    if not path.exists():
        _make_big(INPUT, path)
    return path


def _make_big(src: Path, dest: Path) -> None:
    """Upscale `src` to BIG_SIZE (bicubic), add Gaussian noise (sigma 4, a tiled 997 x 997
    pattern: making 50 M noise samples takes Pillow seconds), save as JPEG q90 with its EXIF."""
    with Image.open(src) as im:
        exif = im.info.get("exif")
        big = im.convert("RGB").resize(BIG_SIZE, Image.Resampling.BICUBIC)
    side = 997
    tile = Image.merge("RGB", [Image.effect_noise((side, side), 4.0) for _ in range(3)])
    noise = Image.new("RGB", BIG_SIZE)
    for y in range(0, BIG_SIZE[1], side):
        for x in range(0, BIG_SIZE[0], side):
            noise.paste(tile, (x, y))
    big = ImageChops.add(big, noise, scale=1.0, offset=-128)
    temp = dest.with_name(f"{dest.name}.{os.getpid()}.tmp")
    options: dict[str, Any] = {"quality": 90}
    if isinstance(exif, bytes):
        options["exif"] = exif
    big.save(temp, "JPEG", **options)
    os.replace(temp, dest)


# --- small helpers --------------------------------------------------------------------------


def _pool(processes: int) -> ProcessPoolExecutor:
    """Fresh interpreters (spawn: nothing of this process is inherited). A process that dies
    raises BrokenProcessPool rather than hanging, as multiprocessing.Pool would."""
    return ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn"))


def _size(path: Path) -> tuple[int, int]:
    with Image.open(path) as im:
        return im.size


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None
