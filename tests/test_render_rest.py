"""A photo's other renditions (workers/photos.py render_rest: AVIF and the other widths, seconds of
CPU each on a queue of their own) are sent once, rendered by one worker at a time, and tried
again later when they run out of time, not dropped at the first try.

The photos are written here straight to the store and the database, their first stage marked
done, so that no worker of the suite's takes their rest before the test does: the sweep and the
task run in processes of the test's own (real Celery tasks, real Redis and PostgreSQL)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import redis as redis_lib
from yarl import URL

from shared import keys
from shared.photos.store import media_store
from shared.settings import Settings
from shared.tasks import RENDER_REST, RENDITIONS, TaskSender
from tests.conftest import QUIET_DB, ROOT
from tests.photos import jpeg
from tests.test_counters import news_category


def add_photo(settings: Settings, data: bytes, *, rendered: str, queued: str | None = None) -> int:
    """A photo whose first stage is done (`rendered`, `queued`: SQL times), in an article still
    processing and touched just now (so that the sweep leaves the article alone)."""
    sha = hashlib.sha256(data).hexdigest()
    original = media_store(settings).original(sha)
    original.parent.mkdir(parents=True, exist_ok=True)
    original.write_bytes(data)
    with psycopg.connect(settings.require_backends()[0], autocommit=True) as conn:
        article = conn.execute(
            "INSERT INTO articles (uuid, slug, category_id, title, status, search_text)"
            " VALUES (gen_random_uuid(), %s, %s, 'Bài có ảnh', 'processing', '') RETURNING id",
            (f"bai-{sha[:8]}", news_category(conn)),
        ).fetchone()
        assert article is not None
        row = conn.execute(
            "INSERT INTO images (article_id, position, part, role, sha256, format, bytes, width,"
            f" height, rendered_at, rest_queued_at) VALUES (%s, 0, 'a', 'inline', %s, 'jpeg', %s,"
            f" 100, 100, {rendered}, {queued or 'NULL'}) RETURNING id",
            (article[0], sha, len(data)),
        ).fetchone()
        assert row is not None
        return int(row[0])


def photo_row(settings: Settings, image_id: int) -> dict[str, Any]:
    with psycopg.connect(settings.require_backends()[0]) as conn:
        cur = conn.execute(
            "SELECT completed_at, rest_queued_at, rest_error, rest_tries, error,"
            " (SELECT count(*) FROM renditions r WHERE r.image_id = i.id) AS renditions"
            " FROM images i WHERE i.id = %s",
            (image_id,),
        )
        names = [d.name for d in cur.description or []]
        found = cur.fetchone()
        assert found is not None
        return dict(zip(names, found, strict=True))


# Runs tasks in a process of its own, as a worker's process would: configured from the
# environment, then, on each line of stdin, the Python expression it names, printing its value.
RUNNER = """
import json, os, sys
from shared.settings import Settings
from workers.app import configure
configure(Settings.from_env(os.environ))
from workers.photos import render_rest
from workers.publishing import sweep
print("ready", flush=True)
for line in sys.stdin:
    print(json.dumps(eval(line)), flush=True)
"""


def runner(env: dict[str, str]) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", RUNNER],
        cwd=ROOT,
        env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    return proc


def stop(proc: subprocess.Popen[str]) -> None:
    proc.kill()
    proc.communicate()  # waits, and closes its pipes


def ask(proc: subprocess.Popen[str], expression: str) -> Any:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(expression + "\n")
    proc.stdin.flush()
    return json.loads(proc.stdout.readline())


@pytest.fixture
def quiet_redis(base_env: dict[str, str]) -> Iterator[tuple[dict[str, str], redis_lib.Redis]]:
    """The environment of a worker process whose Redis no worker of the suite's listens to,
    so that what it sends stays in the queues for the test to count."""
    url = str(URL(base_env["BANTIN_REDIS_URL"]).with_path(f"/{QUIET_DB}"))
    client = redis_lib.Redis.from_url(url)
    client.flushdb()
    yield {**base_env, "BANTIN_REDIS_URL": url}, client
    client.flushdb()
    client.close()


def queued_rest(client: redis_lib.Redis) -> list[int]:
    """The photo ids of the render_rest messages waiting in the renditions queue (kombu's Redis
    transport: a list of JSON messages whose body is base64 of [args, kwargs, embed])."""
    messages = [json.loads(m) for m in client.lrange(RENDITIONS, 0, -1)]
    return sorted(json.loads(base64.b64decode(m["body"]))[0][0] for m in messages)


def test_the_sweep_sends_a_photos_rest_once_not_every_sweep(
    clean: Settings, quiet_redis: tuple[dict[str, str], redis_lib.Redis]
) -> None:
    """A photo whose rest was just sent (by render_image) waits in a long queue: the sweep
    leaves it alone. One whose message was lost long ago is sent again by the first sweep, and
    not by the next ones (every 30 s), until the same long time has passed again."""
    env, client = quiet_redis
    small = jpeg(64, 48)
    waiting = add_photo(clean, small, rendered="now() - interval '10 minutes'", queued="now()")
    lost = add_photo(
        clean,
        jpeg(64, 48, colour=(0, 90, 0)),
        rendered="now() - interval '10 minutes'",
        queued="now() - interval '10 minutes'",
    )
    before = add_photo(  # rendered before rest_queued_at existed
        clean, jpeg(64, 48, colour=(0, 0, 90)), rendered="now() - interval '10 minutes'"
    )
    proc = runner(env)
    try:
        swept = [ask(proc, "sweep()") for _ in range(3)]
        assert queued_rest(client) == sorted([lost, before])
        assert [s["renditions"] for s in swept] == [2, 0, 0]
        assert photo_row(clean, waiting)["rest_queued_at"] is not None
        # Long after, the photo's rest still not complete: its message is lost again.
        with psycopg.connect(clean.require_backends()[0], autocommit=True) as conn:
            conn.execute(
                "UPDATE images SET rest_queued_at = now() - interval '10 minutes' WHERE id = %s",
                (lost,),
            )
        # Sent again only once the queue is empty: a waiting message is not a lost one.
        assert ask(proc, "sweep()")["renditions"] == 0
        client.delete(RENDITIONS)  # as a renditions worker takes them
        assert ask(proc, "sweep()")["renditions"] == 1
        assert queued_rest(client) == [lost]
    finally:
        stop(proc)


def test_a_rest_stopped_again_and_again_is_given_up(
    clean: Settings, quiet_redis: tuple[dict[str, str], redis_lib.Redis]
) -> None:
    """A photo whose rest was started REST_TRIES times and never completed (killed at the
    hard time limit each time, or with its worker) is not sent again forever: the sweep
    completes it with what its first stage made and the reason; readers see it as before."""
    from workers.photos import REST_TRIES

    env, client = quiet_redis
    old = "now() - interval '10 minutes'"
    stopped = add_photo(clean, jpeg(64, 48), rendered=old, queued=old)
    once = add_photo(clean, jpeg(64, 48, colour=(0, 90, 0)), rendered=old, queued=old)
    with psycopg.connect(clean.require_backends()[0], autocommit=True) as conn:
        conn.execute("UPDATE images SET rest_tries = %s WHERE id = %s", (REST_TRIES, stopped))
        conn.execute("UPDATE images SET rest_tries = 1 WHERE id = %s", (once,))
    proc = runner(env)
    try:
        assert ask(proc, "sweep()")["renditions"] == 1
        assert queued_rest(client) == [once]
    finally:
        stop(proc)
    row = photo_row(clean, stopped)
    assert row["completed_at"] is not None and row["error"] is None
    assert f"stopped {REST_TRIES} times" in row["rest_error"]
    assert photo_row(clean, once)["completed_at"] is None


def test_two_workers_given_the_same_photo_render_it_once(
    clean: Settings, base_env: dict[str, str]
) -> None:
    """Two copies of one photo's render_rest, started together in two worker processes (two
    renditions workers, or a copy the sweep sent): one renders, the other finds it rendering."""
    image_id = add_photo(clean, jpeg(2400, 1600), rendered="now()", queued="now()")
    procs = [runner(base_env) for _ in range(2)]
    try:
        for proc in procs:  # both at once: rendering takes seconds, starting a few ms
            assert proc.stdin is not None
            # As a worker runs it (apply: a retry it asks for is run at once, in this process).
            proc.stdin.write(f"render_rest.apply(args=[{image_id}]).get()\n")
            proc.stdin.flush()
        outcomes = sorted(json.loads(proc.stdout.readline()) for proc in procs if proc.stdout)
        assert outcomes == ["already rendering", "completed"]
        row = photo_row(clean, image_id)
        assert row["completed_at"] is not None and row["rest_error"] is None
        assert row["renditions"] > 0
        assert row["rest_tries"] == 1  # the copy that found it rendering did not count
        assert ask(procs[0], f"render_rest({image_id})") == "nothing to do"
        redis = redis_lib.Redis.from_url(clean.redis_url or "")
        assert not redis.exists(keys.rest_lock(image_id))  # released by the one that rendered
        redis.close()
    finally:
        for proc in procs:
            stop(proc)


def test_a_rest_out_of_time_is_tried_again_then_completed_without_it(
    clean: Settings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A rest that runs out of time is tried once more (later: Celery's retry with a countdown,
    here applied at once), and when it runs out again the photo is completed with what its
    first stage made and the reason, not marked unrenderable (`error`), so readers still see
    it. (The time limit is made tiny here, in this process.)"""
    from workers import photos
    from workers.app import close, configure

    configure(clean)
    monkeypatch.setattr(photos, "SOFT_LIMIT", 10)  # render()'s own limit: 0 s
    image_id = add_photo(clean, jpeg(800, 600), rendered="now()", queued="now()")
    try:
        with caplog.at_level(logging.WARNING, logger="workers.photos"):
            result = photos.render_rest.apply(args=[image_id])
        # (Celery's apply() follows an eager retry to its end.)
        assert result.get() == "completed without the rest"
        tries = [r.getMessage() for r in caplog.records]
        assert len(tries) == 2, tries
        assert "trying again in 60 s" in tries[0]
        assert "completed without the other renditions" in tries[1]
        row = photo_row(clean, image_id)
        assert row["completed_at"] is not None and row["error"] is None
        assert "took longer" in row["rest_error"] and row["renditions"] == 0
    finally:
        close()


def test_a_photo_another_worker_is_rendering_is_left_to_it(clean: Settings) -> None:
    """The lock another worker holds, held here: the task leaves the photo to it."""
    from workers import photos
    from workers.app import close, configure

    configure(clean)
    image_id = add_photo(clean, jpeg(800, 600), rendered="now()", queued="now()")
    redis = redis_lib.Redis.from_url(clean.redis_url or "")
    held = redis.lock(keys.rest_lock(image_id), timeout=30)
    assert held.acquire(blocking=False)
    try:
        assert photos.render_rest.apply(args=[image_id]).get() == "already rendering"
        assert photo_row(clean, image_id)["completed_at"] is None
        held.release()
        assert photos.render_rest.apply(args=[image_id]).get() == "completed"
    finally:
        redis.close()
        close()


@pytest.mark.usefixtures("worker")
async def test_a_photo_locked_by_a_killed_render_is_rendered_when_the_lock_expires(
    clean: Settings,
) -> None:
    """A renditions worker killed mid-render leaves its lock (until it expires) and its message
    comes back to another worker (acks_late), which finds the photo locked: it looks again when
    the lock has expired instead of dropping it (the sweep would send it again only minutes
    later). The killed worker's lock is set here, with a short life."""
    image_id = add_photo(clean, jpeg(800, 600), rendered="now()", queued="now()")
    redis = redis_lib.Redis.from_url(clean.redis_url or "")
    assert redis.set(keys.rest_lock(image_id), "a dead worker's token", px=2000)
    sender = TaskSender(clean.redis_url or "")
    try:
        await sender.send(RENDER_REST, image_id)
        for _ in range(300):
            if photo_row(clean, image_id)["completed_at"] is not None:
                break
            await asyncio.sleep(0.1)
        row = photo_row(clean, image_id)
        assert row["completed_at"] is not None and row["rest_error"] is None, row
        assert row["renditions"] > 0
    finally:
        sender.close()
        redis.close()
