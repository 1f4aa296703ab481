"""Readers behind a reverse proxy: whom X-Forwarded-For may name, and only when it is believed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from ipaddress import ip_network
from typing import Any

import pytest
import redis as redis_lib
from aiohttp.test_utils import make_mocked_request

from shared.settings import Settings, SettingsError
from shared.web import client_address
from tests.conftest import publisher
from tests.test_counters import drained, flushed, r, stats

__all__ = ["r"]  # the fixture, used by name below

BROWSER = "Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 Chrome/126.0 Mobile Safari/537.36"
LOCAL = (ip_network("127.0.0.0/8"),)
PROXIES = (ip_network("10.0.0.0/8"), ip_network("::1/128"))


def request_from(peer: str, *forwarded: str) -> Any:
    headers = [("X-Forwarded-For", value) for value in forwarded]
    return make_mocked_request("GET", "/", headers=headers, transport=_Transport(peer))


class _Transport:
    def __init__(self, peer: str) -> None:
        self.peer = peer

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return (self.peer, 50000) if name == "peername" else default

    def is_closing(self) -> bool:
        return False


@pytest.mark.parametrize(
    ("peer", "forwarded", "reader"),
    [
        # No proxy between: the peer is the reader, whatever the header says.
        ("203.0.113.9", ("198.51.100.1",), "203.0.113.9"),
        # Through one trusted proxy: the address it received from.
        ("10.0.0.2", ("198.51.100.1",), "198.51.100.1"),
        # The reader wrote a header of its own: the proxy appended the real address after it.
        ("10.0.0.2", ("1.2.3.4, 198.51.100.1",), "198.51.100.1"),
        # Two trusted proxies, the header split over two lines.
        ("10.0.0.2", ("198.51.100.1", "10.0.0.7"), "198.51.100.1"),
        ("::1", ("2001:db8::5, 10.1.2.3",), "2001:db8::5"),
        # Every hop trusted: the first one is where the request began.
        ("10.0.0.2", ("10.9.9.9, 10.0.0.7",), "10.9.9.9"),
        # Garbage where an address should be: the proxy's own address, not the garbage.
        ("10.0.0.2", ("not-an-address",), "10.0.0.2"),
        # A trusted proxy that forwarded nothing.
        ("10.0.0.2", (), "10.0.0.2"),
        # A dual-stack listener sees an IPv4 proxy as an IPv4-mapped IPv6 address.
        ("::ffff:10.0.0.2", ("198.51.100.1",), "198.51.100.1"),
        ("::ffff:203.0.113.9", ("198.51.100.1",), "::ffff:203.0.113.9"),
    ],
)
def test_client_address(peer: str, forwarded: tuple[str, ...], reader: str) -> None:
    assert client_address(request_from(peer, *forwarded), PROXIES) == reader


def test_nothing_trusted_by_default() -> None:
    settings = Settings.from_env({})
    assert settings.trusted_proxies == () and settings.proxy_networks == ()
    assert client_address(request_from("10.0.0.2", "198.51.100.1")) == "10.0.0.2"


def test_trusted_proxies_setting() -> None:
    settings = Settings.from_env({"BANTIN_TRUSTED_PROXIES": " 10.0.0.0/8, 192.168.1.7 ,::1,"})
    assert settings.trusted_proxies == ("10.0.0.0/8", "192.168.1.7/32", "::1/128")
    assert settings.to_env()["BANTIN_TRUSTED_PROXIES"] == "10.0.0.0/8,192.168.1.7/32,::1/128"
    with pytest.raises(SettingsError, match="BANTIN_TRUSTED_PROXIES: 'localhost' is not an IP"):
        Settings.from_env({"BANTIN_TRUSTED_PROXIES": "localhost"})
    # A typo that would silently trust a whole /8 is refused, not widened.
    with pytest.raises(SettingsError, match=r"'10\.0\.0\.5/8' is not an IP address or network"):
        Settings.from_env({"BANTIN_TRUSTED_PROXIES": "10.0.0.5/8"})


@pytest.fixture
async def proxied_site(aiohttp_client: Any, clean: Settings) -> AsyncIterator[Any]:
    """The site as it runs behind a proxy on this machine: the test client is the proxy."""
    yield await publisher(aiohttp_client, clean.with_(trusted_proxies=("127.0.0.0/8",)))


@pytest.mark.usefixtures("worker")
async def test_readers_without_cookies_behind_the_proxy_are_told_apart(
    proxied_site: Any, site: Any, r: redis_lib.Redis
) -> None:
    """Without a cookie a reader is known by address: behind a trusted proxy, by the address
    the proxy forwarded, not the proxy's own (which would make every reader one visitor)."""
    readers = ("198.51.100.1", "198.51.100.2", "2001:db8::7")
    for address in readers:
        for _ in range(2):
            proxied_site.session.cookie_jar.clear()  # a reader who keeps no cookie
            response = await proxied_site.get(
                "/", headers={"User-Agent": BROWSER, "X-Forwarded-For": address}
            )
            assert response.status == 200
    await flushed(proxied_site)
    await drained(r)
    assert await stats(proxied_site) == {
        "online": 3,
        "total": 6,
        "today_views": 6,
        "today_visitors": 3,
    }
    # Where the peer is not trusted, a forged header changes nothing: one visitor more.
    for address in readers:
        site.session.cookie_jar.clear()
        response = await site.get("/", headers={"User-Agent": BROWSER, "X-Forwarded-For": address})
        assert response.status == 200
    await flushed(site)
    await drained(r)
    assert (await stats(site))["today_visitors"] == 4
