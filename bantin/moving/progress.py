"""What an import or export tells the person running it: a progress bar with counts and an ETA
on a terminal (tqdm), a plain line every few seconds otherwise (a log, a CI job), and at the end
a summary of what came in, what was skipped and why, what failed and why."""

from __future__ import annotations

import sys
import time
from collections import Counter
from types import TracebackType
from typing import TextIO

from tqdm import tqdm

PLAIN_EVERY = 5.0  # seconds between plain lines
SHOWN = 20  # failures listed one by one in the summary; the rest are counted


class Report:
    """Counts of one run, shown while it runs and summed up at its end."""

    def __init__(self, what: str, stream: TextIO | None = None) -> None:
        self.what = what
        self.stream = stream or sys.stderr
        self.total: int | None = None
        self.seen = 0
        self.imported = 0
        self.photos = 0
        self.skipped: Counter[str] = Counter()
        self.skips: list[str] = []
        self.failed: Counter[str] = Counter()
        self.failures: list[str] = []  # "item: reason", for the summary
        self.started = time.monotonic()
        self._last_line = self.started
        self._bar: tqdm | None = None

    def __enter__(self) -> Report:
        if self.stream.isatty():
            # n/total, a bar, the rate and the time left; the counts follow as the postfix.
            self._bar = tqdm(
                desc=self.what,
                total=self.total,
                file=self.stream,
                unit=" items",
                dynamic_ncols=True,
                leave=True,
            )
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        err: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._refresh()
            self._bar.close()
            self._bar = None

    def set_total(self, total: int | None) -> None:
        self.total = total
        if self._bar is not None:
            self._bar.total = total
            self._bar.refresh()

    def skip(self, reason: str, n: int = 1, *, item: str | None = None) -> None:
        """Items left out on purpose; with `item`, named in the summary."""
        self.skipped[reason] += n
        self.seen += n
        if item is not None:
            self.skips.append(f"{item}: {reason}")

    def fail(self, item: str, reason: str, *, counted: bool = True) -> None:
        """An item (or a photo of one: counted=False) that could not come in."""
        self.failed[reason.split(":", 1)[0]] += 1
        self.failures.append(f"{item}: {reason}")
        if counted:
            self.seen += 1

    def done(self, n: int = 1, photos: int = 0) -> None:
        self.imported += n
        self.photos += photos
        self.seen += n

    def tick(self) -> None:
        """Called after each batch: redraws the bar, or prints a plain line now and then."""
        if self._bar is not None:
            self._refresh()
            return
        now = time.monotonic()
        if now - self._last_line >= PLAIN_EVERY:
            self._last_line = now
            print(f"{self.what}: {self.line()}", file=self.stream, flush=True)

    def _refresh(self) -> None:
        assert self._bar is not None
        self._bar.n = self.seen
        self._bar.set_postfix_str(self._counts(), refresh=False)
        self._bar.refresh()

    def _counts(self) -> str:
        return (
            f"imported {self.imported}, skipped {sum(self.skipped.values())},"
            f" failed {sum(self.failed.values())}"
        )

    def line(self) -> str:
        elapsed = time.monotonic() - self.started
        rate = self.seen / elapsed if elapsed > 0 else 0.0
        of = f"/{self.total}" if self.total else ""
        eta = ""
        if self.total and rate > 0 and self.seen < self.total:
            eta = f", about {int((self.total - self.seen) / rate)} s left"
        return f"{self.seen}{of} items, {self._counts()} ({rate:.0f}/s{eta})"

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        elapsed = time.monotonic() - self.started
        lines = [f"{self.what}: imported {self.imported} in {elapsed:.1f} s"]
        if self.photos:
            lines[0] += f", with {self.photos} photos"
        if self.skipped:
            why = ", ".join(f"{reason}: {n}" for reason, n in sorted(self.skipped.items()))
            lines.append(f"skipped {sum(self.skipped.values())} ({why})")
            lines.extend(f"  {s}" for s in self.skips[:SHOWN])
        if self.failed:
            why = ", ".join(f"{reason}: {n}" for reason, n in sorted(self.failed.items()))
            lines.append(f"failed {sum(self.failed.values())} ({why})")
            lines.extend(f"  {f}" for f in self.failures[:SHOWN])
            if len(self.failures) > SHOWN:
                lines.append(f"  ... and {len(self.failures) - SHOWN} more")
        return "\n".join(lines)
