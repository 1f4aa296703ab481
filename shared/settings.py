"""Every setting bantin has, read from the environment once, at each process's start.

`Settings.from_env()` is the only place that looks at `os.environ`; everything else receives the
`Settings` object. A bad value stops start-up with one line that names the variable.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

T = TypeVar("T")

# Whole-number settings: field -> (variable, default, minimum).
LIMITS: dict[str, tuple[str, int, int]] = {
    "max_photo_bytes": ("BANTIN_MAX_PHOTO_BYTES", 25 * 1024 * 1024, 1024),
    "max_photos": ("BANTIN_MAX_PHOTOS", 50, 0),
    "max_request_bytes": ("BANTIN_MAX_REQUEST_BYTES", 200 * 1024 * 1024, 1024),
    "max_json_bytes": ("BANTIN_MAX_JSON_BYTES", 2 * 1024 * 1024, 1024),
    "max_pixels": ("BANTIN_MAX_PIXELS", 50_000_000, 1),
    "rate_limit_per_minute": ("BANTIN_RATE_LIMIT_PER_MINUTE", 600, 1),
    "feed_size": ("BANTIN_FEED_SIZE", 50, 1),
    "page_size": ("BANTIN_PAGE_SIZE", 20, 1),
    "page_cache_seconds": ("BANTIN_PAGE_CACHE_SECONDS", 300, 0),
    # How long a request waits for PostgreSQL or Redis (a connection, an answer) before it is
    # answered 503: a dependency away costs a reader seconds, never a hang.
    "dependency_timeout": ("BANTIN_DEPENDENCY_TIMEOUT", 2, 1),
    # The desk: a session ends after this long without a request.
    "session_idle_minutes": ("BANTIN_SESSION_IDLE_MINUTES", 60, 1),
}


class SettingsError(ValueError):
    """A setting has a value bantin cannot use; the message names the variable."""


@dataclass(frozen=True, slots=True)
class Settings:
    home: Path
    database_url: str | None
    redis_url: str | None
    media_dir: Path
    public_url: str
    site_name: str
    timezone: str
    admin_token: str | None
    websub_hub: str | None
    log_level: str
    log_format: str  # "text" or "json"
    count_views: bool  # record page views (off only to measure what counting costs)
    # Reverse proxies whose X-Forwarded-For names the reader (addresses or networks).
    trusted_proxies: tuple[str, ...]
    # Limits for what submitters send.
    max_photo_bytes: int
    max_photos: int
    max_request_bytes: int
    max_json_bytes: int
    max_pixels: int
    rate_limit_per_minute: int
    # Readers' side.
    feed_size: int
    page_size: int
    page_cache_seconds: int
    dependency_timeout: int  # seconds
    # The desk.
    session_idle_minutes: int
    review: bool  # BANTIN_REVIEW: submitters' articles wait for an editor
    # s3://bucket/prefix: media in an S3-compatible store (shared/photos/objectstore.py); media_dir
    # then holds only scratch files.
    media_url: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        home = Path(env.get("BANTIN_HOME") or "./var").expanduser().absolute()
        media = env.get("BANTIN_MEDIA_DIR")
        return cls(
            home=home,
            database_url=_url(env, "BANTIN_DATABASE_URL", ("postgresql", "postgres")),
            redis_url=_url(env, "BANTIN_REDIS_URL", ("redis", "rediss", "unix")),
            media_dir=Path(media).expanduser().absolute() if media else home / "media",
            public_url=(_url(env, "BANTIN_PUBLIC_URL", ("http", "https")) or "").rstrip("/"),
            site_name=env.get("BANTIN_SITE_NAME", "").strip() or "Cổng thông tin điện tử",
            timezone=_timezone(env.get("BANTIN_TIMEZONE") or "Asia/Ho_Chi_Minh"),
            admin_token=_secret(env, "BANTIN_ADMIN_TOKEN"),
            websub_hub=_url(env, "BANTIN_WEBSUB_HUB", ("http", "https")),
            log_level=_choice(
                env, "BANTIN_LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR")
            ),
            log_format=_choice(env, "BANTIN_LOG_FORMAT", "text", ("text", "json")),
            count_views=_choice(env, "BANTIN_COUNT_VIEWS", "on", ("on", "off")) == "on",
            trusted_proxies=_networks(env, "BANTIN_TRUSTED_PROXIES"),
            review=_choice(env, "BANTIN_REVIEW", "off", ("off", "on")) == "on",
            media_url=_url(env, "BANTIN_MEDIA_URL", ("s3",)),
            **{
                field: _int(env, name, default, minimum)
                for field, (name, default, minimum) in LIMITS.items()
            },
        )

    def with_(self, **changes: Any) -> Settings:
        """A copy with some values replaced (the supervisor fills in embedded server URLs)."""
        return replace(self, **changes)

    def with_home(self, home: Path) -> Settings:
        """The same settings on another data folder (`bantin up --home`): the media folder
        moves with it, unless BANTIN_MEDIA_DIR put it elsewhere."""
        media = home / "media" if self.media_dir == self.home / "media" else self.media_dir
        return replace(self, home=home, media_dir=media)

    def site_url(self, default_port: int = 8080) -> str:
        """The absolute base URL for links in feeds: BANTIN_PUBLIC_URL, else the local site."""
        return self.public_url or f"http://127.0.0.1:{default_port}"

    def require_backends(self) -> tuple[str, str]:
        """The database and Redis URLs a single role needs; a clear error when one is missing."""
        if not self.database_url:
            raise SettingsError(
                "BANTIN_DATABASE_URL: not set (run everything with `bantin up`, which starts an "
                "embedded PostgreSQL, or set it to postgresql://user@host:5432/db)"
            )
        if not self.redis_url:
            raise SettingsError(
                "BANTIN_REDIS_URL: not set (run everything with `bantin up`, which starts an "
                "embedded Redis, or set it to redis://host:6379/0)"
            )
        return self.database_url, self.redis_url

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def proxy_networks(self) -> tuple[IPv4Network | IPv6Network, ...]:
        return tuple(ip_network(n) for n in self.trusted_proxies)

    def to_env(self) -> dict[str, str]:
        """The environment that gives a child process these same settings."""
        env = {
            "BANTIN_HOME": str(self.home),
            "BANTIN_MEDIA_DIR": str(self.media_dir),
            "BANTIN_SITE_NAME": self.site_name,
            "BANTIN_TIMEZONE": self.timezone,
            "BANTIN_LOG_LEVEL": self.log_level,
            "BANTIN_LOG_FORMAT": self.log_format,
            "BANTIN_COUNT_VIEWS": "on" if self.count_views else "off",
            "BANTIN_TRUSTED_PROXIES": ",".join(self.trusted_proxies),
            "BANTIN_REVIEW": "on" if self.review else "off",
        }
        optional = {
            "BANTIN_DATABASE_URL": self.database_url,
            "BANTIN_REDIS_URL": self.redis_url,
            "BANTIN_PUBLIC_URL": self.public_url,
            "BANTIN_ADMIN_TOKEN": self.admin_token,
            "BANTIN_WEBSUB_HUB": self.websub_hub,
            "BANTIN_MEDIA_URL": self.media_url,
        }
        env.update({k: v for k, v in optional.items() if v})
        env.update({name: str(getattr(self, field)) for field, (name, _, _) in LIMITS.items()})
        return env


def _url(env: Mapping[str, str], name: str, schemes: tuple[str, ...]) -> str | None:
    value = env.get(name, "").strip()
    if not value:
        return None
    parts = urlsplit(value)
    if parts.scheme not in schemes or not (parts.netloc or parts.path):
        raise SettingsError(f"{name}: {value!r} is not a URL of scheme {' or '.join(schemes)}")
    return value


def _int(env: Mapping[str, str], name: str, default: int, minimum: int) -> int:
    raw = env.get(name, "").strip().replace("_", "")
    if not raw:
        return default
    return _checked(name, raw, int, lambda v: v >= minimum, f"a whole number >= {minimum}")


def _checked(
    name: str, raw: str, convert: Callable[[str], T], ok: Callable[[T], bool], what: str
) -> T:
    try:
        value = convert(raw)
    except ValueError:
        raise SettingsError(f"{name}: {raw!r} is not {what}") from None
    if not ok(value):
        raise SettingsError(f"{name}: {raw!r} is not {what}")
    return value


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    value = raw.upper() if choices[0].isupper() else raw.lower()
    if value not in choices:
        raise SettingsError(f"{name}: {raw!r} is not one of {', '.join(choices)}")
    return value


def _networks(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """A comma-separated list of addresses and networks (10.0.0.0/8, ::1), normalised."""
    found = []
    for raw in env.get(name, "").split(","):
        if raw.strip():
            found.append(
                _checked(
                    name,
                    raw.strip(),
                    lambda v: str(ip_network(v)),
                    bool,
                    "an IP address or network with no host bits set (such as 10.0.0.0/8)",
                )
            )
    return tuple(found)


def _timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise SettingsError(f"BANTIN_TIMEZONE: {name!r} is not a known IANA time zone") from None
    return name


def _secret(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    if not value:
        return None
    if len(value) < 16:
        raise SettingsError(f"{name}: too short; use at least 16 random characters")
    return value
