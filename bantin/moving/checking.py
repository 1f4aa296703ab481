"""The one place imports reach the submission checks: an imported article is checked and
sanitized exactly as one sent to the API."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from typing import Any

from shared.articles import ArticleDraft, ImageDraft
from shared.shapes import Submission, check_article, check_category

__all__ = ["Submission", "check_all", "check_category", "check_many", "draft", "process_pool"]

Checked = tuple[Submission | None, list[dict[str, str]]]
POOL_FROM = 200  # fewer articles are checked in a thread: the pool's round trip costs more


def check_many(items: Sequence[Any], max_photos: int) -> list[Checked]:
    """Check a chunk of articles (in a worker process of the import's pool, or inline)."""
    return [check_article(data, max_photos=max_photos) for data in items]


def process_pool(jobs: int) -> Executor | None:
    """The processes that check articles in parallel (None: check in a thread)."""
    return ProcessPoolExecutor(jobs, initializer=_quiet) if jobs > 1 else None


def _quiet() -> None:
    """The pool's processes leave Ctrl-C to the importer, which stops them itself."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


async def check_all(
    pool: Executor | None, jobs: int, items: list[Any], max_photos: int
) -> list[Checked]:
    """Check a batch, split across the pool's `jobs` processes when it is worth it."""
    if pool is None or len(items) < POOL_FROM:
        return await asyncio.to_thread(check_many, items, max_photos)
    loop = asyncio.get_running_loop()
    size = -(-len(items) // jobs)
    parts = [items[i : i + size] for i in range(0, len(items), size)]
    done = await asyncio.gather(
        *(loop.run_in_executor(pool, check_many, part, max_photos) for part in parts)
    )
    return [result for part in done for result in part]


def draft(submission: Submission, category_id: int, images: Sequence[ImageDraft]) -> ArticleDraft:
    """What the bulk write path stores of a checked article."""
    return submission.draft(category_id, images)
