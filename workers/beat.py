"""Exactly one beat per site, whatever runs: `docker compose --scale beat=2`, two `bantin up`
sharing servers, or a restarted container whose old self is still shutting down.

Beat holds a Redis lock that it renews; a second beat waits until the lock is free and takes
over then (at most LOCK_SECONDS after the first one dies without releasing it). Two beats
would send every periodic task twice.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import threading
import time
from typing import Any

from redis import Redis

from shared import keys
from shared.settings import Settings

log = logging.getLogger(__name__)

LOCK_SECONDS = 30
RENEW_EVERY = 10
WAIT_EVERY = 5

# Extend the lock only if it is still ours (compare-and-set in one step).
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('expire', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""


def run(settings: Settings) -> None:
    from celery.apps.beat import Beat

    from workers.app import configure

    _, redis_url = settings.require_backends()
    redis = Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)
    token = f"{os.getpid()}-{secrets.token_hex(6)}"
    _acquire(redis, token)
    stop = threading.Event()
    threading.Thread(target=_renew, args=(redis, token, stop), daemon=True).start()
    try:
        app = configure(settings)
        folder = settings.home / "run"
        folder.mkdir(parents=True, exist_ok=True)
        Beat(
            app=app, schedule=str(folder / "celerybeat-schedule"), loglevel=settings.log_level
        ).run()
    finally:
        stop.set()
        redis.eval(_RELEASE, 1, keys.BEAT_LOCK, token)


def _acquire(redis: Redis, token: str) -> None:
    said = False
    stopping = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    try:
        while not redis.set(keys.BEAT_LOCK, token, nx=True, ex=LOCK_SECONDS):
            if not said:
                log.info("another beat holds the schedule (%s); standing by", _holder(redis))
                said = True
            if stopping.wait(WAIT_EVERY):
                raise SystemExit(0)
    finally:
        signal.signal(signal.SIGTERM, previous)
    log.info("this beat holds the schedule")


def _holder(redis: Redis) -> Any:
    value = redis.get(keys.BEAT_LOCK)
    return value.decode() if isinstance(value, bytes) else value


def _renew(redis: Redis, token: str, stop: threading.Event) -> None:
    while not stop.wait(RENEW_EVERY):
        try:
            held = redis.eval(_RENEW, 1, keys.BEAT_LOCK, token, LOCK_SECONDS)
        except Exception:
            log.warning("could not renew the beat lock; retrying", exc_info=True)
            continue
        if not held:
            # Another beat took over (this one was frozen past the lock's life): stop at once
            # rather than send every task twice; the supervisor or compose starts us again.
            log.error("lost the beat lock to another beat; exiting")
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
            os._exit(1)
