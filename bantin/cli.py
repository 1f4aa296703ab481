"""The `bantin` command: the whole stack (`up`), single roles for docker compose, and admin tasks.

Each process reads its settings from the environment here, once, and hands them down.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from bantin import users
from bantin.moving import commands as moving
from shared import logs
from shared.models import TOKEN_ROLES
from shared.settings import Settings, SettingsError
from shared.tasks import QUEUES, RENDITIONS


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    home: Path | None = None
    try:
        settings = Settings.from_env()
        home = settings.home
        if args.command not in ("up",):
            settings = _with_running_stack(settings)
        logs.setup(settings, args.command)
        return int(args.run(settings, args) or 0)
    except SettingsError as err:
        hint = ""
        if home is not None and "_URL: not set" in str(err):
            # Most often: an admin command run outside the folder where `make run` runs.
            hint = (
                f"\nbantin: no running `bantin up` was found in {home}; run this"
                " command in the folder where `make run` runs, or set BANTIN_HOME to its data"
                " folder (./var there)"
            )
        print(f"bantin: {err}{hint}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bantin", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="run everything on this machine (embedded PostgreSQL, Redis)")
    up.add_argument("--home", help="data folder (default: $BANTIN_HOME or ./var)")
    up.add_argument("--site-port", type=int, default=8080)
    up.add_argument("--api-port", type=int, default=8081)
    up.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 2,
        help="Celery worker processes (default: one per core)",
    )
    up.add_argument("--no-demo", action="store_true", help="do not load the demo article")
    up.set_defaults(run=_up)

    for role, port in (("ingest", 8081), ("publisher", 8080)):
        p = sub.add_parser(role, help=f"serve the {role} service only")
        p.add_argument("--host", default="0.0.0.0")  # noqa: S104 (a container's service)
        p.add_argument("--port", type=int, default=port)
        p.set_defaults(run=_serve, role=role)

    worker = sub.add_parser("worker", help="run a Celery worker")
    worker.add_argument("--concurrency", type=int, default=os.cpu_count() or 2)
    worker.add_argument(
        "--queues",
        type=_queue_names,
        default=QUEUES,
        help=f"the queues to consume, comma-separated (default: all, {','.join(QUEUES)})",
    )
    worker.add_argument(
        "--exclude-queues",
        type=_queue_names,
        default=(),
        help=f"queues to leave out; `--exclude-queues {RENDITIONS}` beside a worker of their own",
    )
    worker.add_argument(
        "--nice",
        type=int,
        default=0,
        help="lower this worker's CPU priority by N (1-19): for the renditions worker",
    )
    worker.set_defaults(run=_worker)
    sub.add_parser("beat", help="run Celery beat (exactly one per site)").set_defaults(run=_beat)
    sub.add_parser("migrate", help="apply database migrations").set_defaults(run=_migrate)

    token = sub.add_parser("token", help="manage API tokens")
    tsub = token.add_subparsers(dest="token_command", required=True)
    create = tsub.add_parser("create", help="create a token and print it (shown once)")
    create.add_argument("--name", required=True)
    create.add_argument("--role", choices=TOKEN_ROLES, default="submitter")
    create.set_defaults(run=_token_create)
    tsub.add_parser("list", help="list tokens (never their secrets)").set_defaults(run=_token_list)
    revoke = tsub.add_parser("revoke", help="revoke a token at once")
    revoke.add_argument("id", type=int)
    revoke.set_defaults(run=_token_revoke)

    users.add_commands(sub)

    counters = sub.add_parser("counters", help="visit counters")
    csub = counters.add_subparsers(dest="counters_command", required=True)
    set_total = csub.add_parser(
        "set-total", help="set the total page views (a site moving from an old portal)"
    )
    set_total.add_argument("total", type=int)
    set_total.set_defaults(run=_counters_set_total)
    moving.register(sub)  # import, export, redirects
    return parser


def _with_running_stack(settings: Settings) -> Settings:
    """Commands run beside `bantin up` use its embedded servers unless URLs are given."""
    path = settings.home / "run" / "env.json"
    if (settings.database_url and settings.redis_url) or not path.exists():
        return settings
    running = json.loads(path.read_text())
    return settings.with_(
        database_url=settings.database_url or running["BANTIN_DATABASE_URL"],
        redis_url=settings.redis_url or running["BANTIN_REDIS_URL"],
    )


def _up(settings: Settings, args: argparse.Namespace) -> int:
    from bantin.supervisor import Options, Stack

    if args.home:
        settings = settings.with_home(Path(args.home).expanduser().absolute())
    options = Options(
        site_port=args.site_port,
        api_port=args.api_port,
        workers=args.workers,
        demo=not args.no_demo,
    )
    return Stack(settings, options).run()


def _serve(settings: Settings, args: argparse.Namespace) -> None:
    from shared import db, web

    database_url, _ = settings.require_backends()
    db.migrate(database_url)
    if args.role == "ingest":
        from services.ingest.app import create_app
    else:
        from services.publisher.app import create_app
    web.run(create_app(settings), host=args.host, port=args.port, shutdown_timeout=10)


def _queue_names(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in QUEUES]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown queue {', '.join(unknown)}; bantin's queues are {', '.join(QUEUES)}"
        )
    return names


def lower_priority(nice: int) -> None:
    """Lower this process's CPU priority (and its pool processes', which inherit it). Where
    the kernel groups processes by session for scheduling (autogroup), a niceness counts only
    against the same session's processes, so the session's group is lowered too when this
    process leads a session of its own (as `bantin up` starts its parts; never a terminal's)."""
    if nice <= 0:
        return
    os.nice(nice)
    if os.getsid(0) != os.getpid():
        return
    try:
        Path("/proc/self/autogroup").write_text(f"{nice}\n")
    except OSError:
        pass  # no autogroup here (or not allowed): the niceness alone does the job


def _worker(settings: Settings, args: argparse.Namespace) -> None:
    from shared.photos.render import limit_malloc_arenas

    limit_malloc_arenas()  # first: before any thread (see its docstring)
    queues = [name for name in args.queues if name not in args.exclude_queues]
    if not queues:
        raise SettingsError("bantin worker: --exclude-queues leaves no queue to consume")
    lower_priority(args.nice)
    from shared import db
    from workers.app import configure

    db.migrate(settings.require_backends()[0])
    app = configure(settings)
    app.worker_main(
        [
            "worker",
            "--loglevel",
            settings.log_level,
            "--queues",
            ",".join(queues),
            "--concurrency",
            str(args.concurrency),
            "--without-gossip",
            "--without-mingle",
            "--hostname",
            f"worker-{os.getpid()}@%h",
        ]
    )


def _beat(settings: Settings, args: argparse.Namespace) -> None:
    from workers import beat

    beat.run(settings)


def _migrate(settings: Settings, args: argparse.Namespace) -> None:
    from shared import db

    applied = db.migrate(settings.require_backends()[0])
    print(f"applied {', '.join(applied)}" if applied else "database is up to date")


def _token_create(settings: Settings, args: argparse.Namespace) -> None:
    from shared import tokens

    async def create() -> str:
        async with await _connect(settings) as conn:
            return await tokens.create(conn, args.name, args.role)

    print(asyncio.run(create()))


def _token_list(settings: Settings, args: argparse.Namespace) -> None:
    from shared import tokens

    async def listing() -> list[tokens.Token]:
        async with await _connect(settings) as conn:
            return await tokens.list_all(conn)

    for t in asyncio.run(listing()):
        state = f"revoked {t.revoked_at:%Y-%m-%d %H:%M}" if t.revoked_at else "active"
        used = f"{t.last_used_at:%Y-%m-%d %H:%M}" if t.last_used_at else "never"
        print(f"{t.id}\t{t.role}\t{state}\tlast used {used}\t{t.name}")


def _token_revoke(settings: Settings, args: argparse.Namespace) -> int:
    from shared import tokens

    async def revoke() -> bool:
        async with await _connect(settings) as conn:
            return await tokens.revoke(conn, args.id)

    if asyncio.run(revoke()):
        print(f"revoked token {args.id}")
        return 0
    print(f"bantin: no active token {args.id}", file=sys.stderr)
    return 1


def _counters_set_total(settings: Settings, args: argparse.Namespace) -> int:
    from redis import Redis

    from shared.counting.count import set_total

    if args.total < 0:
        print("bantin: the total is a whole number >= 0", file=sys.stderr)
        return 2
    database_url, redis_url = settings.require_backends()
    with Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5) as r:
        set_total(r, database_url, args.total)
    print(f"total page views set to {args.total}")
    return 0


async def _connect(settings: Settings):  # type: ignore[no-untyped-def]
    import psycopg
    from psycopg.rows import dict_row

    database_url, _ = settings.require_backends()
    return await psycopg.AsyncConnection.connect(
        database_url, autocommit=True, row_factory=dict_row
    )


if __name__ == "__main__":
    sys.exit(main())
