"""What an import or export shows while it runs (bantin/moving/progress.py): on a terminal a bar
with counts and the time left, redrawn in place; elsewhere (a log, a CI job) a plain line every
few seconds, never a bar's control characters."""

from __future__ import annotations

import io
import re

import pytest

from bantin.moving import progress
from bantin.moving.progress import Report


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(progress.time, "monotonic", clock)
    return clock


def test_a_terminal_gets_a_bar_with_counts_and_the_time_left() -> None:
    screen = Terminal()
    with Report("import wordpress", stream=screen) as report:
        report.set_total(10)
        report.done(3, photos=2)
        report.skip("trang nháp")
        report.fail("post 7", "photo: unreadable")
        report.tick()
        drawn = screen.getvalue()
    assert "import wordpress" in drawn
    assert "5/10" in drawn  # items seen of the total
    assert "imported 3, skipped 1, failed 1" in drawn
    assert re.search(r"<\d\d:\d\d", drawn), drawn  # tqdm's time left, [elapsed<left]
    assert "\r" in drawn  # redrawn in place
    # Closed at the end, drawn one last time with the final count.
    final = screen.getvalue().rsplit("\r", 1)[-1]
    assert "5/10" in final and final.endswith("\n")


def test_without_a_terminal_a_plain_line_every_few_seconds(clock: Clock) -> None:
    log = io.StringIO()
    with Report("import feed", stream=log) as report:
        report.set_total(40)
        report.done(4)
        report.tick()
        clock.now += 1
        report.tick()
        assert log.getvalue() == ""  # not yet: one line every PLAIN_EVERY seconds
        clock.now += progress.PLAIN_EVERY
        report.done(6)
        report.tick()
        report.tick()
    lines = log.getvalue().splitlines()
    assert len(lines) == 1, lines
    assert "\r" not in log.getvalue() and "\x1b" not in log.getvalue()
    # 10 of 40 in 6 s: 2 items a second, 30 left, about 18 s.
    assert lines[0] == (
        "import feed: 10/40 items, imported 10, skipped 0, failed 0 (2/s, about 18 s left)"
    )


def test_the_summary_counts_what_came_in_what_was_skipped_and_what_failed() -> None:
    report = Report("import bantin", stream=io.StringIO())
    report.done(2, photos=3)
    report.skip("đã có", 2)
    report.fail("article 9", "photo: too large", counted=False)
    assert not report.ok
    lines = report.summary().splitlines()
    assert lines[0].startswith("import bantin: imported 2 in ") and "with 3 photos" in lines[0]
    assert lines[1:] == [
        "skipped 2 (đã có: 2)",
        "failed 1 (photo: 1)",
        "  article 9: photo: too large",
    ]
