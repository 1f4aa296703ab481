"""Logging for every bantin process: plain text for people, JSON lines for log collectors."""

from __future__ import annotations

import itertools
import json
import logging
import os
import secrets
import sys
from contextvars import ContextVar
from datetime import UTC, datetime

from shared.settings import Settings

# The request that caused this work: set by the services' middleware for each request, carried
# into every task that request enqueues (a Celery message header), and into tasks those tasks
# enqueue, so that one submission can be followed through every log line it caused.
request_id: ContextVar[str | None] = ContextVar("request_id", default=None)


# Request ids need to be unique, not secret: a counter from a random start (drawn again in every
# forked child), which costs less per request than drawing random bits (os.urandom per request
# showed in profiles). Two processes' ranges overlap only if their starts fall within the
# requests either serves of each other, out of 2**64.
class _Ids:
    def __init__(self) -> None:
        self.restart()

    def restart(self) -> None:
        # 63 bits: the count stays below 2**64, and so within 16 hex digits, for ever
        self.next = itertools.count(secrets.randbits(63)).__next__


_ids = _Ids()
os.register_at_fork(after_in_child=_ids.restart)


def new_request_id() -> str:
    return _ids.next().to_bytes(8, "big").hex()  # 16 hex digits, the fastest way (64 ns)


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):  # the access line brings its own
            record.request_id = request_id.get() or "-"
        return True


class JsonFormatter(logging.Formatter):
    def __init__(self, role: str) -> None:
        super().__init__()
        self.role = role

    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "role": self.role,
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", "-")
        if rid != "-":
            doc["request_id"] = rid
        http = getattr(record, "http", None)
        if http is not None:  # an access line: its fields as fields
            doc.update(http)
        if record.exc_info:
            doc["error"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False)


def setup(settings: Settings, role: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter(role))
    else:
        handler.setFormatter(
            logging.Formatter(
                f"%(asctime)s {role} %(levelname)s [%(request_id)s] %(name)s: %(message)s"
            )
        )
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    # Beat's line per sent task (the counters' drain runs every second) would drown everything
    # else; metrics count tasks instead. The access log (shared/web.py) stays: one line per
    # request is what an operator follows a request by.
    logging.getLogger("celery.beat").setLevel(logging.WARNING)
    # libvips' own chatter (about 30 INFO lines a photo, most of a worker's log) is for
    # whoever debugs the renderer: shown only at BANTIN_LOG_LEVEL=DEBUG; its warnings stay.
    if root.level > logging.DEBUG:
        logging.getLogger("pyvips").setLevel(logging.WARNING)
