"""Exactly one beat per site, whatever runs: `docker compose --scale beat=2`, two `bantin up`
sharing servers, or a restarted container whose old self is still shutting down.

Beat holds a Redis lock that it renews; a second beat waits until the lock is free and takes
over then (at most LOCK_SECONDS after the first one dies without releasing it). Two beats
would send every periodic task twice.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time

from redis import Redis
from redis.exceptions import LockError, LockNotOwnedError
from redis.lock import Lock

from shared import keys
from shared.settings import Settings

log = logging.getLogger(__name__)

LOCK_SECONDS = 30
RENEW_EVERY = 10
WAIT_EVERY = 5


def run(settings: Settings) -> None:
    from celery.apps.beat import Beat

    from workers.app import configure

    _, redis_url = settings.require_backends()
    redis = Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)
    # redis-py's Lock: a random token, set only if absent, extended and released only while
    # it is still ours (its own compare-and-set scripts). Not thread-local: the renewing
    # thread extends the lock the main thread took.
    lock = redis.lock(keys.BEAT_LOCK, timeout=LOCK_SECONDS, thread_local=False)
    _acquire(lock)
    stop = threading.Event()
    threading.Thread(target=_renew, args=(lock, stop), daemon=True).start()
    try:
        app = configure(settings)
        folder = settings.home / "run"
        folder.mkdir(parents=True, exist_ok=True)
        Beat(
            app=app, schedule=str(folder / "celerybeat-schedule"), loglevel=settings.log_level
        ).run()
    finally:
        stop.set()
        with contextlib.suppress(LockError):  # taken over meanwhile: nothing of ours to free
            lock.release()


def _acquire(lock: Lock) -> None:
    said = False
    stopping = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    try:
        while not lock.acquire(blocking=False):
            if not said:
                log.info("another beat holds the schedule; standing by")
                said = True
            if stopping.wait(WAIT_EVERY):
                raise SystemExit(0)
    finally:
        signal.signal(signal.SIGTERM, previous)
    log.info("this beat holds the schedule")


def _renew(lock: Lock, stop: threading.Event) -> None:
    while not stop.wait(RENEW_EVERY):
        try:
            lock.reacquire()  # back to LOCK_SECONDS, if still ours
        except LockNotOwnedError:
            # Another beat took over (this one was frozen past the lock's life): stop at once
            # rather than send every task twice; the supervisor or compose starts us again.
            log.error("lost the beat lock to another beat; exiting")
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
            os._exit(1)
        except Exception:
            log.warning("could not renew the beat lock; retrying", exc_info=True)
