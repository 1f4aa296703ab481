"""The counters worker's drain, back to back, in a process of its own (as the worker is):

    python -m bench.hits_drain --redis redis://127.0.0.1:PORT/0 --target N [--limit-s 300]

Prints "ready" once connected, then calls `shared.counting.count.drain` until the total of counted
views reaches N, and prints one JSON line: {"done_at": time.monotonic() or null, "tally": {...},
"calls": n}. CLOCK_MONOTONIC is system-wide on Linux, so the parent can compare it with its own.
The total must exist before it starts (the hits_pipeline benchmark sets it to 0), so the drain
never needs PostgreSQL to restore from.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from zoneinfo import ZoneInfo

from redis import Redis

from shared import keys

NO_DATABASE = "postgresql://unused@127.0.0.1:1/none"
# After a drain that found nothing: a pause, so that an idle drain does not poll Redis flat out
# against the recorder (bantin's beat sends one drain a second; this is far more eager).
IDLE_SLEEP = 0.010


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hits_drain")
    parser.add_argument("--redis", required=True)
    parser.add_argument("--target", type=int, required=True)
    parser.add_argument("--limit-s", type=float, default=300.0)
    parser.add_argument("--zone", default="Asia/Ho_Chi_Minh")
    args = parser.parse_args()

    from shared.counting.count import drain

    zone = ZoneInfo(args.zone)
    tally: Counter[str] = Counter()
    calls = 0
    done_at = None
    with Redis.from_url(args.redis, socket_timeout=10) as r:
        r.ping()
        print("ready", flush=True)  # noqa: T201 (the parent waits for this line)
        deadline = time.monotonic() + args.limit_s
        while time.monotonic() < deadline:
            got = drain(r, zone, NO_DATABASE, budget=0.8)
            calls += 1
            tally.update(got)
            if int(r.get(keys.TOTAL) or 0) >= args.target:
                done_at = time.monotonic()
                break
            if not got.get("counted"):
                time.sleep(IDLE_SLEEP)
    print(json.dumps({"done_at": done_at, "tally": dict(tally), "calls": calls}), flush=True)  # noqa: T201
    return 0 if done_at is not None else 1


if __name__ == "__main__":
    sys.exit(main())
