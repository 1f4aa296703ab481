"""`bantin redirects load`: a CSV of old_path,new_path, checked whole, answered 301 by the
publisher."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

from shared.redirects import keys
from shared.settings import Settings
from tests.conftest import publisher
from tests.fixtures.moving import bantin, query, write

CSV = """old_path,new_path
/index.php?option=com_content&view=article&id=5,/tin-hoat-dong/
http://cu.example.vn/gioi-thieu.html,/gioi-thieu/
/tin-tức/bài-cũ,/tin-hoat-dong/?page=2
"""


async def test_a_csv_of_old_addresses_answers_301(
    clean: Settings, aiohttp_client: Any, tmp_path: Path
) -> None:
    ran = await bantin(clean, "redirects", "load", str(write(tmp_path / "r.csv", CSV)))
    assert ran.code == 0, ran.err
    assert "imported 3" in ran.out
    again = await bantin(clean, "redirects", "load", str(tmp_path / "r.csv"))
    assert again.code == 0 and "already present: 3" in again.out

    site = await publisher(aiohttp_client, clean)
    for old, new in (
        # The query's order does not matter.
        ("/index.php?id=5&option=com_content&view=article", "/tin-hoat-dong/"),
        ("/gioi-thieu.html", "/gioi-thieu/"),
        ("/tin-t%E1%BB%A9c/b%C3%A0i-c%C5%A9/", "/tin-hoat-dong/?page=2"),
    ):
        response = await site.get(old, allow_redirects=False)
        assert response.status == 301, old
        assert response.headers["Location"] == new
    assert (await site.get("/khong-co.html", allow_redirects=False)).status == 404


async def test_a_bad_csv_loads_nothing(clean: Settings, tmp_path: Path) -> None:
    bad = CSV + "/a,/b,/c\nnot a path,/x\n/self,/self/\n"
    ran = await bantin(clean, "redirects", "load", str(write(tmp_path / "bad.csv", bad)))
    assert ran.code == 1
    assert "line 5: expected 2 columns" in ran.out
    assert "line 6: 'not a path' is not an old address" in ran.out
    assert "line 7: '/self' would redirect to itself" in ran.out
    assert "nothing was loaded" in ran.err
    assert query(clean, "SELECT count(*) AS n FROM redirects")[0]["n"] == 0


def test_a_plain_query_keys_as_the_full_sorting_and_quoting_would() -> None:
    """keys() leaves a query of one plain name and value as it is, without parsing it: the
    same key as parsing, sorting and quoting it again gives, for these and for the others."""
    for asked in ("p=123", "p=", "a.b_c~d-e=x.Y_z~w-1", "p", "p=1=2", "q=a+b", "q=%20",
                  "b=2&a=1", "=1", "p=1&", "tên=cũ", "p=1;q=2"):  # fmt: skip
        expected = urlencode(sorted(parse_qsl(asked, keep_blank_values=True)))
        assert keys(f"http://cu.example.vn/a/?{asked}") == (
            [f"/a?{expected}", "/a"] if expected else ["/a"]
        ), asked
    assert keys("/?p=123") == ["/?p=123", "/"]
    assert keys("/a/b/") == ["/a/b"]
