"""What the browser tests share (the readers' site in test_browser.py, the desk in
test_desk_browser.py): Debian's Chromium, its flags, the widths, and axe-core's check.

axe-core is vendored in tests/vendor/axe-core (with its licence) and added to every page of a
context through the DevTools protocol (`axe_context`), so a page's Content-Security-Policy
does not keep it out; `serious_violations(page, name)` runs it on the page as it is now.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from tests.conftest import ROOT

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
OFFICE = {"width": 1366, "height": 768}
PHONE = {"width": 390, "height": 844}
AXE = (ROOT / "tests" / "vendor" / "axe-core" / "axe.min.js").read_text("utf-8")
SHOTS = ROOT / "bench-results" / "screenshots"  # copies, for a look by eye


async def axe_context(browser: Any, viewport: dict[str, int]) -> Any:
    """A Vietnamese browsing context of that size with axe-core in every page."""
    context = await browser.new_context(viewport=viewport, locale="vi-VN")
    await context.add_init_script(script=AXE)
    return context


async def check_and_shoot(page: Any, name: str, shots: Path, folder: str) -> Path:
    """No serious or critical axe-core violation on the page as it is now, nothing wider than
    the window (no sideways scrolling); then a full-page screenshot NAME-office.png or
    NAME-phone.png in `shots`, copied to bench-results/screenshots/FOLDER/. Returns its path."""
    result = await page.evaluate(
        "axe.run(document, {resultTypes: ['violations']})"
        ".then(r => r.violations.map(v => ({id: v.id, impact: v.impact,"
        " nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 3)})))"
    )
    bad = [v for v in result if v["impact"] in ("serious", "critical")]
    assert bad == [], f"{name}: {json.dumps(bad, ensure_ascii=False)}"
    overflow = await page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"{name} is {overflow}px wider than the window"
    width = "phone" if page.viewport_size["width"] < 500 else "office"
    shot = shots / f"{name}-{width}.png"
    await page.screenshot(path=str(shot), full_page=True)
    (SHOTS / folder).mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, SHOTS / folder / shot.name)
    return shot
