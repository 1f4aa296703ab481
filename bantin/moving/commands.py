"""`bantin import ...`, `bantin export DIR`, `bantin redirects load FILE`.

Every command checks its source before it writes anything, shows its progress, prints a summary,
and exits 0 when everything came in, 1 when something failed (the summary says what), 2 when the
source cannot be used at all (nothing was written), 130 when interrupted (run it again: it goes
on where it stopped).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import os
import sys
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

from bantin.moving.progress import Report
from shared.settings import Settings

INTERRUPTED = 130


def register(sub: Any) -> None:
    """Add the commands to `bantin`'s sub-parsers."""
    imp = sub.add_parser("import", help="bring in an old portal's articles, or a bantin export")
    isub = imp.add_subparsers(dest="import_command", required=True)
    wp = isub.add_parser("wordpress", help="a WordPress export (WXR, Tools > Export)")
    wp.add_argument("file", type=Path)
    wp.add_argument(
        "--media-from",
        metavar="URL_OR_DIR",
        help="fetch photos from here instead of the old site (another base URL, or a local"
        " copy of wp-content/uploads)",
    )
    feed = isub.add_parser("feed", help="an RSS 2.0 or Atom feed (a URL or a file)")
    feed.add_argument("source", metavar="URL_OR_FILE")
    for p in (wp, feed):
        _tuning(p)
    wp.set_defaults(run=import_wordpress)
    feed.set_defaults(run=import_feed)
    restore = isub.add_parser("bantin", help="a folder written by `bantin export`")
    restore.add_argument("folder", type=Path)
    _tuning(restore)
    restore.set_defaults(run=import_bantin)

    export = sub.add_parser("export", help="write the whole site to a folder (a backup)")
    export.add_argument("folder", type=Path)
    export.set_defaults(run=export_site)

    redirects = sub.add_parser("redirects", help="old addresses answered with 301")
    rsub = redirects.add_subparsers(dest="redirects_command", required=True)
    load = rsub.add_parser("load", help="load a CSV of old_path,new_path")
    load.add_argument("file", type=Path)
    load.set_defaults(run=load_redirects)


Command = Callable[[Settings, argparse.Namespace], int]


def _command(run: Command) -> Command:
    """What every command answers when the run cannot go on: Ctrl-C, or a server away."""

    @functools.wraps(run)
    def guarded(settings: Settings, args: argparse.Namespace) -> int:
        import psycopg
        import redis

        try:
            return run(settings, args)
        except KeyboardInterrupt:
            print("bantin: interrupted; run the same command again to go on", file=sys.stderr)
            return INTERRUPTED
        except (psycopg.OperationalError, redis.ConnectionError, redis.TimeoutError) as err:
            print(
                f"bantin: cannot reach the database or Redis ({err}); what was written is"
                " complete, run the same command again once they answer",
                file=sys.stderr,
            )
            return 2

    return guarded


def _tuning(p: argparse.ArgumentParser) -> None:
    p.add_argument("--batch", type=int, default=500, help="articles per transaction")
    p.add_argument(
        "--jobs",
        type=int,
        default=os.cpu_count() or 1,
        help="processes that check and sanitize articles (default: one per core)",
    )
    p.add_argument(
        "--photo-timeout", type=float, default=30.0, help="seconds allowed for one photo"
    )


def _migrated(settings: Settings) -> tuple[str, str]:
    from shared import db

    database_url, redis_url = settings.require_backends()
    db.migrate(database_url)
    return database_url, redis_url


def _refused(source: object, err: Exception) -> int:
    print(f"bantin: {source}: {err}; nothing was imported", file=sys.stderr)
    return 2


def _finish(report: Report, run: Callable[[], Coroutine[Any, Any, None]]) -> int:
    # The objects of startup (every imported module's) stay to the end: the garbage
    # collector's full rounds went through them all again and again, and its young rounds
    # came every 700 new objects, when an article brings dozens. Measured on an import of
    # 10,000 articles: 0.3 s of the main process's 2.1 s of CPU, 0.1 s this way.
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)
    try:
        with report:
            asyncio.run(run())
    except KeyboardInterrupt:
        print(report.summary())
        print(
            "bantin: interrupted; what was written is complete, and running the same command"
            " again goes on where it stopped",
            file=sys.stderr,
        )
        return INTERRUPTED
    print(report.summary())
    return 0 if report.ok else 1


def _import(
    settings: Settings,
    args: argparse.Namespace,
    report: Report,
    source: str,
    items: Iterator[Any],
    media_from: str | None = None,
) -> int:
    from bantin.moving.engine import Importer
    from bantin.moving.photos import Fetcher

    async def run() -> None:
        async with Fetcher(settings, media_from, timeout=args.photo_timeout) as fetcher:
            importer = Importer(
                settings, source, report, fetcher, batch=max(1, args.batch), jobs=args.jobs
            )
            await importer.run(items)

    return _finish(report, run)


@_command
def import_wordpress(settings: Settings, args: argparse.Namespace) -> int:
    from bantin.moving import wordpress

    _migrated(settings)
    report = Report("import wordpress")
    print(f"reading {args.file} ...", file=sys.stderr)
    try:
        # The whole file is checked before anything is written.
        found = wordpress.scan(args.file)
    except wordpress.BadExport as err:
        return _refused(args.file, err)
    report.set_total(found.posts)
    source = f"wordpress:{found.site or args.file.name}"
    items = wordpress.items(args.file, found)
    return _import(settings, args, report, source, items, args.media_from)


@_command
def import_feed(settings: Settings, args: argparse.Namespace) -> int:
    from bantin.moving import feed

    _migrated(settings)
    report = Report("import feed")
    try:
        raw = asyncio.run(_read_feed(args.source, args.photo_timeout))
        parsed = feed.parse(raw, args.source)
    except (feed.BadFeed, OSError) as err:
        return _refused(args.source, err)
    report.set_total(len(parsed.entries))
    return _import(settings, args, report, parsed.source, feed.items(parsed))


async def _read_feed(source: str, seconds: float) -> bytes:
    import aiohttp

    from bantin.moving.feed import MAX_FEED_BYTES, BadFeed

    if not source.startswith(("http://", "https://")):
        path = Path(source)
        size = await asyncio.to_thread(lambda: path.stat().st_size)
        if size > MAX_FEED_BYTES:
            raise BadFeed(f"larger than {MAX_FEED_BYTES} bytes: not a feed")
        return await asyncio.to_thread(path.read_bytes)
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=seconds)) as session,
            session.get(source) as response,
        ):
            if response.status != 200:
                raise BadFeed(f"HTTP {response.status}")
            data = bytearray()
            async for chunk in response.content.iter_chunked(256 * 1024):
                data += chunk
                if len(data) > MAX_FEED_BYTES:
                    raise BadFeed(f"larger than {MAX_FEED_BYTES} bytes: not a feed")
            return bytes(data)
    except TimeoutError as err:
        raise BadFeed(f"no complete answer within {seconds:g} s") from err
    except aiohttp.ClientError as err:
        raise BadFeed(str(err) or type(err).__name__) from err


@_command
def load_redirects(settings: Settings, args: argparse.Namespace) -> int:
    from bantin.moving import redirects

    database_url, _ = _migrated(settings)
    report = Report("redirects load")
    try:
        with report:
            redirects.load(database_url, args.file, report)
    except redirects.BadCsv as err:
        return _refused(args.file, err)
    print(report.summary())
    if not report.ok:
        print(
            "bantin: nothing was loaded; mend these lines and load the file again", file=sys.stderr
        )
        return 1
    return 0


@_command
def export_site(settings: Settings, args: argparse.Namespace) -> int:
    from bantin.moving import export

    database_url, redis_url = _migrated(settings)
    report = Report("export")
    try:
        with report:
            export.export(settings, database_url, redis_url, args.folder, report)
    except export.ExportError as err:
        print(f"bantin: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bantin: interrupted; the folder is incomplete, export again", file=sys.stderr)
        return INTERRUPTED
    print(report.summary())
    return 0 if report.ok else 1


@_command
def import_bantin(settings: Settings, args: argparse.Namespace) -> int:
    from bantin.moving import restore

    _migrated(settings)
    report = Report("import bantin")
    try:
        plan = restore.open_export(args.folder)
    except restore.BadExport as err:
        return _refused(args.folder, err)
    report.set_total(plan.articles)

    async def run() -> None:
        await restore.restore(settings, plan, report, batch=max(1, args.batch), jobs=args.jobs)

    return _finish(report, run)
