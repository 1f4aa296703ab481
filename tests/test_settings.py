from __future__ import annotations

from pathlib import Path

import pytest

from shared.settings import Settings, SettingsError


def test_defaults() -> None:
    s = Settings.from_env({})
    assert s.home == Path("./var").absolute()
    assert s.media_dir == s.home / "media"
    assert s.database_url is None and s.redis_url is None
    assert s.timezone == "Asia/Ho_Chi_Minh"
    assert s.site_name == "Cổng thông tin điện tử"
    assert s.max_photo_bytes == 25 * 1024 * 1024 and s.max_photos == 50
    assert s.max_pixels == 50_000_000 and s.feed_size == 50
    assert s.site_url() == "http://127.0.0.1:8080"


def test_values_from_environment() -> None:
    s = Settings.from_env(
        {
            "BANTIN_HOME": "/srv/bantin",
            "BANTIN_DATABASE_URL": "postgresql://u@db:5432/bantin",
            "BANTIN_REDIS_URL": "redis://cache:6379/2",
            "BANTIN_PUBLIC_URL": "https://vksthaibinh.gov.vn/",
            "BANTIN_SITE_NAME": "VKSND tỉnh Thái Bình",
            "BANTIN_TIMEZONE": "UTC",
            "BANTIN_MAX_PHOTOS": "10",
            "BANTIN_ADMIN_TOKEN": "x" * 32,
        }
    )
    assert s.media_dir == Path("/srv/bantin/media")
    assert s.public_url == "https://vksthaibinh.gov.vn"  # no trailing slash
    assert s.require_backends() == ("postgresql://u@db:5432/bantin", "redis://cache:6379/2")
    assert s.max_photos == 10 and s.site_name == "VKSND tỉnh Thái Bình"
    assert Settings.from_env(s.to_env()) == s


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("BANTIN_DATABASE_URL", "mysql://x/y", "BANTIN_DATABASE_URL: 'mysql://x/y' is not a URL"),
        ("BANTIN_REDIS_URL", "localhost:6379", "BANTIN_REDIS_URL:"),
        ("BANTIN_PUBLIC_URL", "example.org", "BANTIN_PUBLIC_URL:"),
        ("BANTIN_TIMEZONE", "Asia/Hanoi_City", "BANTIN_TIMEZONE: 'Asia/Hanoi_City' is not a known"),
        ("BANTIN_MAX_PHOTOS", "many", "BANTIN_MAX_PHOTOS: 'many' is not a whole number"),
        (
            "BANTIN_MAX_PHOTO_BYTES",
            "12",
            "BANTIN_MAX_PHOTO_BYTES: '12' is not a whole number >= 1024",
        ),
        ("BANTIN_ADMIN_TOKEN", "short", "BANTIN_ADMIN_TOKEN: too short"),
        ("BANTIN_LOG_LEVEL", "LOUD", "BANTIN_LOG_LEVEL: 'LOUD' is not one of"),
    ],
)
def test_bad_value_names_the_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError) as err:
        Settings.from_env({name: value})
    assert str(err.value).startswith(message)
    assert "\n" not in str(err.value)


def test_missing_backends_say_what_to_do() -> None:
    with pytest.raises(SettingsError, match=r"BANTIN_DATABASE_URL: not set.*bantin up"):
        Settings.from_env({}).require_backends()
