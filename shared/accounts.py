"""People who sign in to the desk: accounts, their passwords, and the token each acts through.

The desk writes through the same functions as the API, and those take a token: every account
owns one internal token (`desk`), never shown to anyone, that the desk hands them. API tokens
an account makes for its scripts belong to it too, so its articles are its own whichever way
they came in.

Passwords are hashed with argon2id (argon2-cffi, RFC 9106's second recommended parameter set);
a hash made with older parameters is replaced at the next successful sign-in.
"""

from __future__ import annotations

import asyncio
import functools
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from psycopg import AsyncConnection, errors

from shared import tokens
from shared.models import ACCOUNT_ROLES

Conn = AsyncConnection[Any]
HASHER = PasswordHasher()  # argon2id; its defaults follow RFC 9106's low-memory profile
USERNAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{1,39}$"
MIN_PASSWORD = 10


@functools.cache
def _dummy() -> str:
    """Verified against when the account does not exist, so that an unknown name costs as long
    as a wrong password (no telling names apart by timing). Made at the first sign-in, not at
    import: every process importing this module (each `bantin` command) would pay 0.2 s for it."""
    return HASHER.hash(secrets.token_urlsafe(16))


class AccountError(ValueError):
    """A username, role or password bantin cannot accept; the message says why (in English
    for the CLI; the desk shows its own Vietnamese text for each `code`)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Account:
    id: int
    username: str
    display_name: str
    role: str
    created_at: datetime
    disabled_at: datetime | None

    @property
    def name(self) -> str:
        return self.display_name or self.username

    @property
    def reviews(self) -> bool:
        """Editors and admins publish directly and review others' articles."""
        return self.role in tokens.EDITORS


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise AccountError(
            "password-short", f"the password needs at least {MIN_PASSWORD} characters"
        )


def _check(username: str, role: str) -> None:
    import re

    if not re.match(USERNAME_PATTERN, username):
        raise AccountError(
            "username",
            "a username is 2 to 40 lowercase letters, digits, '.', '_' or '-', such as nguyenvana",
        )
    if role not in ACCOUNT_ROLES:
        raise AccountError("role", f"the role is one of {', '.join(ACCOUNT_ROLES)}")


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(HASHER.hash, password)  # ~50 ms of CPU: not on the loop


_COLUMNS = "id, username, display_name, role, created_at, disabled_at"


async def create(
    conn: Conn, username: str, password: str, role: str, display_name: str = ""
) -> Account:
    _check(username, role)
    check_password(password)
    digest = await hash_password(password)
    try:
        async with conn.transaction():
            cur = await conn.execute(
                "INSERT INTO accounts (username, display_name, password_hash, role)"
                f" VALUES (%s, %s, %s, %s) RETURNING {_COLUMNS}",
                (username, display_name.strip(), digest, role),
            )
            row = await cur.fetchone()
            assert row is not None
            account = Account(**row)
            await tokens.create(conn, f"desk:{username}", role, account_id=account.id, desk=True)
    except errors.UniqueViolation as err:
        raise AccountError("exists", f"the username {username!r} is taken") from err
    return account


async def by_id(conn: Conn, account_id: int) -> Account | None:
    cur = await conn.execute(f"SELECT {_COLUMNS} FROM accounts WHERE id = %s", (account_id,))
    row = await cur.fetchone()
    return Account(**row) if row else None


async def list_all(conn: Conn) -> list[Account]:
    cur = await conn.execute(f"SELECT {_COLUMNS} FROM accounts ORDER BY username")
    return [Account(**row) for row in await cur.fetchall()]


async def verify(conn: Conn, username: str, password: str) -> Account | None:
    """The active account with this username and password, or None. A hash made with other
    parameters than today's is replaced while the password is at hand."""
    cur = await conn.execute(
        f"SELECT {_COLUMNS}, password_hash FROM accounts WHERE username = %s", (username,)
    )
    row = await cur.fetchone()
    stored = row.pop("password_hash") if row else await asyncio.to_thread(_dummy)
    try:
        await asyncio.to_thread(HASHER.verify, stored, password)
    except (VerificationError, InvalidHashError):
        return None
    if row is None or row["disabled_at"] is not None:
        return None
    if HASHER.check_needs_rehash(stored):
        await conn.execute(
            "UPDATE accounts SET password_hash = %s WHERE id = %s",
            (await hash_password(password), row["id"]),
        )
    return Account(**row)


async def set_password(conn: Conn, username: str, password: str) -> bool:
    check_password(password)
    cur = await conn.execute(
        "UPDATE accounts SET password_hash = %s WHERE username = %s",
        (await hash_password(password), username),
    )
    return cur.rowcount == 1


async def disable(conn: Conn, username: str) -> bool:
    """The account can no longer sign in, and every token it owns (its scripts' too) stops
    working at once."""
    async with conn.transaction():
        cur = await conn.execute(
            "UPDATE accounts SET disabled_at = now() WHERE username = %s"
            " AND disabled_at IS NULL RETURNING id",
            (username,),
        )
        row = await cur.fetchone()
        if row is None:
            return False
        await conn.execute(
            "UPDATE tokens SET revoked_at = now() WHERE account_id = %s AND revoked_at IS NULL",
            (row["id"],),
        )
    return True


async def desk_token(conn: Conn, account: Account) -> tokens.Token | None:
    """The token the desk acts through for this account (None once it is disabled)."""
    cur = await conn.execute(
        f"SELECT {tokens.COLUMNS} FROM tokens"
        " WHERE account_id = %s AND desk AND revoked_at IS NULL",
        (account.id,),
    )
    row = await cur.fetchone()
    return tokens.Token(**row) if row else None


async def api_tokens(conn: Conn, account_id: int) -> list[tokens.Token]:
    cur = await conn.execute(
        f"SELECT {tokens.COLUMNS} FROM tokens WHERE account_id = %s AND NOT desk ORDER BY id",
        (account_id,),
    )
    return [tokens.Token(**row) for row in await cur.fetchall()]


async def revoke_api_token(conn: Conn, account_id: int, token_id: int) -> bool:
    cur = await conn.execute(
        "UPDATE tokens SET revoked_at = now() WHERE id = %s AND account_id = %s AND NOT desk"
        " AND revoked_at IS NULL",
        (token_id, account_id),
    )
    return cur.rowcount == 1
