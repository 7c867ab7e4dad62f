"""The inventory page in a real headless Chromium (Debian ``chromium``): no console error, no
request to any origin, one row per service, sorting, filtering, problems first. A screenshot of
each run is saved in the test's temporary directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gatehouse.inventory.model import build
from gatehouse.inventory.render import to_html
from tests.browser import chromium, find_chromium
from tests.inventory_fixtures import context, fleet

BINARY = find_chromium()
pytestmark = pytest.mark.skipif(
    BINARY is None,
    reason="no Chromium on PATH (Debian: `apt-get install -y chromium`; `make test` installs it where it "
    "can; or set GATEHOUSE_CHROMIUM=/path/to/chrome)",
)
ROWS = "#services-table tbody tr"


def test_page_in_chromium(tmp_path: Path) -> None:
    assert BINARY is not None
    inventory = build(fleet(40), context())
    page = tmp_path / "inventory.html"
    page.write_text(to_html(inventory), encoding="utf-8")
    with chromium(BINARY, tmp_path / "profile") as browser:
        browser.open(page.as_uri())
        shot = browser.screenshot(tmp_path / "inventory.png")
        assert shot.stat().st_size > 10_000

        assert browser.evaluate(f"document.querySelectorAll('{ROWS}').length") == len(inventory.services)
        flags = browser.evaluate(
            f"Array.from(document.querySelectorAll('{ROWS}'), r => r.classList.contains('problem'))"
        )
        assert flags == sorted(flags, reverse=True) and flags.count(True) == inventory.problem_count == 5
        # hostile values did not become elements or run
        assert browser.evaluate("document.querySelectorAll('img, iframe, object, embed').length") == 0
        assert browser.evaluate("document.querySelectorAll('script').length") == 1
        assert browser.evaluate(
            "typeof window.alert === 'function' && document.title.startsWith('gatehouse')"
        )

        names = (
            "Array.from(document.querySelectorAll('#services-table tbody tr td:first-child strong'),"
            " e => e.textContent)"
        )
        original = browser.evaluate(names)
        browser.evaluate("document.querySelector('#services-table thead th').click()")
        ascending = browser.evaluate(names)
        assert ascending == sorted(original)
        browser.evaluate("document.querySelector('#services-table thead th').click()")
        assert browser.evaluate(names) == sorted(original, reverse=True)
        # sort by problem count (numeric, from data-sort), descending on the second click
        browser.evaluate(
            "{ const h = document.querySelectorAll('#services-table thead th')[6]; h.click(); h.click(); }"
        )
        counts = browser.evaluate(
            f"Array.from(document.querySelectorAll('{ROWS}'), r => Number(r.cells[6].dataset.sort))"
        )
        assert counts == sorted(counts, reverse=True) and counts[0] >= 1

        visible = (
            f"Array.from(document.querySelectorAll('{ROWS}')).filter(r => !r.hidden).map(r => r.dataset.key)"
        )
        browser.evaluate(
            "{ const f = document.querySelector('form.filter input[type=search]');"
            "f.value = 'svc-03'; f.dispatchEvent(new Event('input')); }"
        )
        shown = browser.evaluate(visible)
        assert shown and all("/services/svc-03" in key for key in shown)
        assert len(shown) == sum(1 for s in inventory.services if "svc-03" in s.name)
        assert (
            browser.evaluate("document.querySelector('form.filter output').textContent")
            == f"{len(shown)} of 40"
        )
        browser.evaluate(
            "{ const f = document.querySelector('form.filter input[type=search]');"
            "f.value = ''; f.dispatchEvent(new Event('input'));"
            "const c = document.querySelector('form.filter input[type=checkbox]');"
            "c.checked = true; c.dispatchEvent(new Event('change')); }"
        )
        assert len(browser.evaluate(visible)) == inventory.problem_count
        browser.screenshot(tmp_path / "inventory-filtered.png")

        assert browser.console_errors() == [], json.dumps(browser.console_errors(), indent=1)
        requested = browser.requested_urls()
        assert requested and all(url == page.as_uri() for url in requested), requested
