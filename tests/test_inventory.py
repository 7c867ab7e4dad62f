"""The inventory model and its renderings, with a fleet whose values a deployer or an alert controls."""

from __future__ import annotations

import html.parser
import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from rich.console import Console

from gatehouse.cli_views import print_inventory
from gatehouse.errors import InputError
from gatehouse.inventory import history
from gatehouse.inventory.model import build, latency_series
from gatehouse.inventory.render import to_html, to_json, visible
from gatehouse.registration.plan import PRODUCT_LABEL
from tests.inventory_fixtures import IMG, RLO, SCRIPT, context, fleet, ticket_body


class _Page(html.parser.HTMLParser):
    """Collects the elements and attributes the browser would build, and the text it would show."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _page(markup: str) -> _Page:
    page = _Page()
    page.feed(markup)
    return page


def test_sections_are_filled_and_problems_come_first() -> None:
    inv = build(fleet(12), context())
    names = [s.name for s in inv.services]
    assert names[:5] == ["svc-000", "svc-001", "svc-002", "svc-003", "svc-004"]
    assert all(s.problems for s in inv.services[:5]) and not any(s.problems for s in inv.services[5:])
    assert [c.service.rsplit("/", 1)[-1] for c in inv.conflicts] == ["svc-003"]
    assert [o.proxy for o in inv.orphans] == ["gone-1234abcd"]
    assert [d.service.rsplit("/", 1)[-1] for d in inv.drift] == ["svc-002"]
    db = next(t for t in inv.targets if t.secret.endswith("/db-password"))
    assert db.overdue and db.current_age_days == 45.0 and [c.detail for c in db.consumers] == ["DB_PASSWORD"]
    key = next(t for t in inv.targets if t.secret.endswith("/svc-007-key"))
    assert [k.age_days for k in key.keys] == [110.0, 20.0] and not key.overdue
    svc7 = next(s for s in inv.services if s.name == "svc-007")
    assert svc7.targets == (key.secret,)  # the key of its runtime account belongs to it
    proxy_sa = next(a for a in inv.accounts if a.email.startswith("apigee-proxy@"))
    assert "projects/shop-prod/locations/europe-west1/services/svc-004" not in proxy_sa.may_invoke
    assert len(proxy_sa.may_invoke) == 8
    ticket = next(t for t in inv.tickets if t.id == "7")
    assert ticket.proxy.startswith("svc-000-") and ticket.latency_ms[-4:] == (900, 1500, 1400, 1300)
    assert ticket.incident_from == 4
    # no product label on the proxy yet: the one the service asks for (its own, by default)
    assert inv.services[0].product == inv.services[0].proxy.name
    assert inv.services[0].history == f"gatehouse history {inv.services[0].key}"


def test_a_service_shows_the_product_its_own_proxy_is_labelled_with() -> None:
    snap = fleet(3)
    index = next(i for i, p in enumerate(snap.proxies) if p.name.startswith("svc-000-"))
    proxy = snap.proxies[index]
    snap.proxies[index] = replace(proxy, labels={**proxy.labels, PRODUCT_LABEL: "payments"})
    inv = build(snap, context())
    assert next(s for s in inv.services if s.name == "svc-000").product == "payments"
    listed = {s["name"]: s["product"] for s in json.loads(to_json(inv))["services"]}
    assert listed["svc-000"] == "payments"


def test_an_invoker_that_was_not_read_is_not_a_problem() -> None:
    snap = fleet(8, hostile=False)
    snap.invokers.clear()
    inv = build(snap, context())
    assert not any("invoker" in p for s in inv.services for p in s.problems)


def test_json_keeps_values_as_they_are() -> None:
    doc = json.loads(to_json(build(fleet(8), context())))
    reason = next(s for s in doc["services"] if s["name"] == "svc-000")["outcome"]["reason"]
    assert SCRIPT in reason and RLO in reason
    assert doc["summary"]["with_problems"] == 5 and doc["summary"]["orphans"] == 1


def test_html_shows_hostile_values_as_text() -> None:
    markup = to_html(build(fleet(12), context()))
    page = _page(markup)
    scripts = [attrs for tag, attrs in page.tags if tag == "script"]
    assert len(scripts) == 1  # only the page's own
    assert not any(tag == "img" for tag, _ in page.tags)
    assert not any(k.startswith("on") for _, attrs in page.tags for k in attrs)
    hrefs = [attrs.get("href") or "" for tag, attrs in page.tags if tag == "a"]
    assert not any(h.startswith(("javascript:", "data:")) for h in hrefs)
    text = "".join(page.text)
    assert SCRIPT in text and IMG in text  # shown, as text
    assert '"quoted" & <b>bold</b>' in text and not any(tag == "b" for tag, _ in page.tags)
    assert "\u202e" not in markup and "<U+202E>gnp.exe" in text
    assert "x" * 301 not in markup  # the 10 kB annotation is not copied into the page
    assert len(markup) < 200_000


def test_html_is_self_contained_with_a_strict_policy() -> None:
    markup = to_html(build(fleet(6, hostile=False), context()))
    page = _page(markup)
    policy = next(a["content"] for t, a in page.tags if t == "meta" and a.get("http-equiv"))
    assert policy is not None and "default-src 'none'" in policy and "unsafe-inline" not in policy
    assert not any(a.get("src") for _, a in page.tags)
    assert not any(t == "link" for t, _ in page.tags)
    rows = [a for t, a in page.tags if t == "tr" and "data-key" in a]
    assert len(rows) == 6


def test_terminal_view_fits_80_columns_and_shows_markup_as_text(capsys: pytest.CaptureFixture[str]) -> None:
    console = Console(width=80, force_terminal=False, highlight=False, soft_wrap=False)
    with console.capture() as captured:
        print_inventory(build(fleet(12), context()), console=console)
    out = captured.get()
    assert all(len(line) <= 80 for line in out.splitlines())
    assert "<script>alert(1)</script>" in out.replace("\n", "") or "<script>" in out
    assert "\u202e" not in out and "<U+202E>" in out
    for title in (
        "services",
        "conflicts",
        "orphans",
        "drift",
        "rotation targets",
        "service accounts",
        "tickets",
    ):
        assert title in out


def test_visible_marks_bidi_and_control_characters() -> None:
    assert visible("a\u202eb\u2066c\x1bd") == "a<U+202E>b<U+2066>c<U+001B>d"
    assert visible(3) == 3


def test_latency_series_reads_the_ticket_table_only() -> None:
    assert latency_series("no table here") == ((), 0)
    assert latency_series(ticket_body([100, 200, 300, 400])) == ((100.0, 200.0, 300.0, 400.0), 2)


# -- history ---------------------------------------------------------------------------------------


def test_history_resource_and_query() -> None:
    def proxy_of(p: str, r: str, s: str) -> str:
        return f"{s}-proxy"

    key = "projects/p1/locations/europe-west1/services/orders"
    target = history.resource(
        key, projects=["p1"], regions=["europe-west1"], project_numbers={}, proxy_of=proxy_of
    )
    assert target.matches == (("service", key), ("proxy", "orders-proxy"))
    secret = history.resource(
        "projects/p1/secrets/tok", projects=["p1"], regions=[], project_numbers={"p1": "42"}
    )
    assert set(secret.matches) == {
        ("secret_name", "projects/42/secrets/tok"),
        ("secret_name", "projects/p1/secrets/tok"),
    }
    with pytest.raises(InputError):
        history.resource('a"b', projects=["p1"], regions=["r"], project_numbers={})
    query = history.query(target, since=datetime(2026, 12, 1, tzinfo=UTC))
    assert query.startswith('timestamp>="2026-12-01T00:00:00Z" AND jsonPayload.logger:"gatehouse" AND (')
    assert f'jsonPayload.service="{key}"' in query


@pytest.mark.parametrize("bad", ["soon", "0d", "30", "-1d", "1y", "999999d"])
def test_history_since_refuses_what_it_cannot_read(bad: str) -> None:
    with pytest.raises(InputError):
        history.parse_since(bad)


def test_history_timeline_groups_by_correlation_id() -> None:
    def entry(t: str, **payload: Any) -> dict[str, Any]:
        return {"timestamp": t, "severity": payload.pop("severity", "INFO"), "payload": payload}

    rows = history.timeline(
        [
            entry(
                "2026-12-06T10:00:02Z",
                correlation_id="a",
                component="on_run_event",
                message="bundle imported",
            ),
            entry(
                "2026-12-06T10:00:05Z",
                correlation_id="a",
                component="on_run_event",
                message="service registered",
                result="registered",
                actions=["import the rendered bundle as a new revision"],
            ),
            entry(
                "2026-12-06T09:00:00Z", correlation_id="b", component="sweep", result="unchanged", message="x"
            ),
            entry(
                "2026-12-06T11:00:00Z",
                correlation_id="c",
                component="on_command",
                message="boom",
                severity="ERROR",
            ),
            {"timestamp": "2026-12-06T12:00:00Z", "payload": "not a mapping"},
        ]
    )
    assert [(r.correlation_id, r.trigger, r.outcome) for r in rows] == [
        ("b", "sweep", "unchanged"),
        ("a", "audit entry", "registered"),
        ("c", "command", "error"),
    ]
    assert rows[1].time == "2026-12-06T10:00:02Z"
    assert rows[1].actions == ["bundle imported", "import the rendered bundle as a new revision"]
