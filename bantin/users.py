"""`bantin user ...`: desk accounts from the command line (the first admin, a lost password)."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from shared import accounts
from shared.models import ACCOUNT_ROLES
from shared.settings import Settings

T = TypeVar("T")


def add_commands(sub: Any) -> None:
    user = sub.add_parser("user", help="manage desk accounts (people who sign in at /desk/)")
    usub = user.add_subparsers(dest="user_command", required=True)
    create = usub.add_parser(
        "create", help="create an account (password from stdin when it is not a terminal)"
    )
    create.add_argument("username")
    create.add_argument("--role", choices=ACCOUNT_ROLES, required=True)
    create.add_argument("--name", default="", help='display name, such as "Nguyễn Văn A"')
    create.set_defaults(run=_create)
    usub.add_parser("list", help="list accounts").set_defaults(run=_list)
    disable = usub.add_parser("disable", help="stop an account and all its tokens at once")
    disable.add_argument("username")
    disable.set_defaults(run=_disable)
    password = usub.add_parser("password", help="set a new password for an account")
    password.add_argument("username")
    password.set_defaults(run=_password)


def read_password() -> str:
    """From stdin when it is piped (scripts), else typed twice without echo."""
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Password again: ") != first:
        raise accounts.AccountError("mismatch", "the two passwords differ")
    return first


def _run(settings: Settings, work: Callable[[accounts.Conn], Awaitable[T]]) -> T:
    import psycopg
    from psycopg.rows import dict_row

    database_url, _ = settings.require_backends()

    async def main() -> T:
        async with await psycopg.AsyncConnection.connect(
            database_url, autocommit=True, row_factory=dict_row
        ) as conn:
            return await work(conn)

    return asyncio.run(main())


def _fail(message: str) -> int:
    print(f"bantin: {message}", file=sys.stderr)
    return 1


def _create(settings: Settings, args: argparse.Namespace) -> int:
    try:
        password = read_password()
        account = _run(
            settings,
            lambda conn: accounts.create(conn, args.username, password, args.role, args.name),
        )
    except accounts.AccountError as err:
        return _fail(str(err))
    print(f"created {account.role} {account.username}")
    return 0


def _list(settings: Settings, args: argparse.Namespace) -> int:
    for a in _run(settings, accounts.list_all):
        state = f"disabled {a.disabled_at:%Y-%m-%d %H:%M}" if a.disabled_at else "active"
        print(f"{a.username}\t{a.role}\t{state}\t{a.display_name}")
    return 0


def _disable(settings: Settings, args: argparse.Namespace) -> int:
    if not _run(settings, lambda conn: accounts.disable(conn, args.username)):
        return _fail(f"no active account {args.username!r}")
    print(f"disabled {args.username}")
    return 0


def _password(settings: Settings, args: argparse.Namespace) -> int:
    try:
        password = read_password()
        changed = _run(settings, lambda conn: accounts.set_password(conn, args.username, password))
    except accounts.AccountError as err:
        return _fail(str(err))
    if not changed:
        return _fail(f"no account {args.username!r}")
    print(f"password changed for {args.username}")
    return 0
