"""Many published articles, written straight into a database with INSERT ... SELECT
generate_series (the ingest path would take hours for a million), and an embedded PostgreSQL
of the benchmark's own to write them into.

The rows look like the site's: Vietnamese titles from a small set of news headlines (so that
related-news and search queries find many matches, as on a real site), a summary, a body of
about a kilobyte, spread over the categories, published one a minute going back in time, so
row i is the i-th newest. Growing a database (10^5 rows, then up to 10^6) adds older rows only:
the newest articles, the ones a feed shows, stay the same, and so does the feed.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import psycopg

from shared import db
from shared.text import search_text

CATEGORIES = (
    ("tin-hoat-dong", "Tin hoạt động"),
    ("tin-tuc-su-kien", "Tin tức sự kiện"),
    ("van-ban-phap-luat", "Văn bản pháp luật"),
    ("cai-cach-tu-phap", "Cải cách tư pháp"),
    ("tuyen-truyen", "Tuyên truyền"),
)
TITLES = (
    "Hội nghị tổng kết công tác kiểm sát năm",
    "Viện kiểm sát nhân dân tỉnh triển khai nhiệm vụ công tác",
    "Kiểm sát viên tham gia phiên tòa rút kinh nghiệm",
    "Tăng cường công tác phòng chống tham nhũng",
    "Hướng dẫn thi hành Bộ luật Tố tụng hình sự",
    "Đoàn công tác kiểm tra việc thi hành án dân sự",
    "Tập huấn nghiệp vụ cho cán bộ kiểm sát",
    "Ký kết quy chế phối hợp giữa các cơ quan tư pháp",
    "Tuyên truyền phổ biến giáo dục pháp luật tại cơ sở",
    "Sơ kết sáu tháng đầu năm công tác kiểm sát",
    "Đại hội chi bộ nhiệm kỳ mới",
    "Trao tặng Kỷ niệm chương vì sự nghiệp kiểm sát",
    "Giải quyết đơn khiếu nại tố cáo của công dân",
    "Phiên tòa xét xử trực tuyến đầu tiên",
    "Thi đua lập thành tích chào mừng ngày thành lập ngành",
    "Kiểm sát việc tạm giữ tạm giam tại nhà tạm giữ",
)
SUMMARY = (
    "Sáng nay, Viện kiểm sát nhân dân tỉnh tổ chức hội nghị với sự tham dự của lãnh đạo các"
    " đơn vị; hội nghị đánh giá kết quả đạt được và đề ra nhiệm vụ trọng tâm thời gian tới."
)
BODY = "".join(
    f"<p>Đoạn {n}: Năm qua, các nhiệm vụ công tác của ngành Kiểm sát nhân dân đã được triển khai"
    " kịp thời và đạt kết quả toàn diện ở tất cả các mặt. Các chỉ tiêu đều đạt và vượt theo yêu"
    " cầu của Quốc hội.</p>"
    for n in range(1, 5)
)

# %% is a literal % for psycopg.
INSERT = """
INSERT INTO articles (uuid, slug, category_id, title, summary, body_source, body_format,
    body_html, author, unit, status, published_at, search_text, created_at, updated_at)
SELECT md5(%(salt)s || i::text)::uuid,
       'bai-viet-so-' || i,
       (%(categories)s::int[])[1 + i %% %(ncat)s],
       (%(titles)s::text[])[1 + i %% %(ntitle)s] || ' (số ' || i || ')',
       %(summary)s, %(body)s, 'html', %(body)s, 'Phóng viên', 'Văn phòng',
       'published', %(newest)s::timestamptz - i * interval '1 minute',
       (%(folded)s::text[])[1 + i %% %(ntitle)s] || ' so ' || i,
       %(newest)s::timestamptz - i * interval '1 minute',
       %(newest)s::timestamptz - i * interval '1 minute'
FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS i
"""


def ensure_categories(conn: psycopg.Connection[Any]) -> list[int]:
    """The categories above (created if missing); their ids in order."""
    ids = []
    for position, (slug, name) in enumerate(CATEGORIES, start=100):
        row = conn.execute(
            "INSERT INTO categories (slug, name, position) VALUES (%s, %s, %s)"
            " ON CONFLICT (slug) DO UPDATE SET name = categories.name RETURNING id",
            (slug, name, position),
        ).fetchone()
        assert row is not None
        ids.append(int(row[0]))
    return ids


def insert_published(
    database_url: str,
    first: int,
    last: int,
    *,
    newest: str,
    category_ids: Sequence[int] | None = None,
    chunk: int = 100_000,
    salt: str = "bantin-bench",
) -> float:
    """Insert articles number first..last (1 is the newest, published at `newest`, an ISO
    time); returns the seconds it took (VACUUM ANALYZE included, as a site at rest has)."""
    t0 = time.monotonic()
    with psycopg.connect(database_url, autocommit=True, connect_timeout=10) as conn:
        conn.execute("SET synchronous_commit = off")
        ids = list(category_ids) if category_ids else ensure_categories(conn)
        params: dict[str, Any] = {
            "salt": salt,
            "categories": ids,
            "ncat": len(ids),
            "titles": list(TITLES),
            "folded": [search_text(t) for t in TITLES],
            "ntitle": len(TITLES),
            "summary": SUMMARY,
            "body": BODY,
            "newest": newest,
        }
        for start in range(first, last + 1, chunk):
            stop = min(last, start + chunk - 1)
            conn.execute(INSERT, {**params, "first": start, "last": stop})
        conn.execute("VACUUM ANALYZE articles")
    return time.monotonic() - t0


def count_articles(database_url: str) -> int:
    with psycopg.connect(database_url, connect_timeout=10) as conn:
        row = conn.execute("SELECT count(*) FROM articles").fetchone()
    return int(row[0]) if row else 0


@contextlib.contextmanager
def embedded_postgres() -> Iterator[str]:
    """A PostgreSQL of our own (bantin's embedded one, in a temporary home), migrated; yields
    its URL; stopped and removed on exit."""
    from bantin.embedded import EmbeddedPostgres

    scratch = Path(tempfile.mkdtemp(prefix="bantin-bench-pg-"))
    pg = EmbeddedPostgres(scratch)
    try:
        proc = pg.start()
        try:
            db.migrate(pg.url)
            yield pg.url
        finally:
            _stop_server(proc)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _stop_server(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)  # PostgreSQL's fast shutdown
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
