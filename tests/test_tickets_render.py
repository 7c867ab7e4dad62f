"""gatehouse.tickets.render: what/why/change sections, escaping, and bodies that fit tracker limits."""

from __future__ import annotations

import dataclasses
import re

import pytest

from gatehouse.events import Incident
from gatehouse.tickets.diagnosis import Thresholds, diagnose
from gatehouse.tickets.evidence import SPARK_MARK, build_evidence, parse_stats
from gatehouse.tickets.fingerprint import Fingerprint
from gatehouse.tickets.proposal import Subject, propose
from gatehouse.tickets.proxyconfig import parse_bundle
from gatehouse.tickets.render import (
    DigestItem,
    Problem,
    digest_body,
    digest_comment,
    issue_body,
    pending_merge,
    title,
    update_comment,
)
from gatehouse.tickets.settings import FINGERPRINT_FIELDS, GITHUB_BODY_LIMIT, JIRA_BODY_LIMIT
from tests.tickets_fakes import direct_bundle, scenario_minutes, stats_response

START = 1_741_960_800


def make_incident(**overrides: object) -> Incident:
    values: dict[str, object] = {
        "incident_id": "0.abc",
        "state": "open",
        "project": "shop-prod-417",
        "environment": "prod",
        "proxy": "orders-v1",
        "metric": "apigee.googleapis.com/proxy/latencies",
        "resource_type": "apigee.googleapis.com/Proxy",
        "policy": "Apigee p95 latency > 2s",
        "condition": "orders-v1 p95",
        "started_at": START + 3600,
        "ended_at": None,
        "observed_value": "2874.113",
        "threshold_value": "2000",
        "summary": "Latencies for orders-v1 are above the threshold.",
        "url": "https://console.cloud.google.com/monitoring/alerting/incidents/0.abc?project=shop-prod-417",
        "test": False,
    }
    values.update(overrides)
    return Incident(**values)  # type: ignore[arg-type]


def make_problem(
    baseline: int = 60, incident: int = 20, *, opened: tuple[Incident, ...] | None = None
) -> Problem:
    doc = stats_response(
        "orders-v1", scenario_minutes("target", baseline=baseline, incident=incident), start=START
    )
    incident_start = START + baseline * 60
    evidence = build_evidence(
        parse_stats(doc, "orders-v1"),
        baseline_start=START,
        incident_start=incident_start,
        incident_end=incident_start + incident * 60,
    )
    diagnosis = diagnose(evidence, "proxy", Thresholds())
    proposal = propose(
        diagnosis,
        parse_bundle(direct_bundle()),
        subject=Subject("shop-prod-417", "prod", "orders-v1"),
        evidence=evidence,
    )
    fp = Fingerprint("shop-prod-417", "prod", "orders-v1", "proxy", proposal.type, FINGERPRINT_FIELDS)
    return Problem(
        fp, opened or (make_incident(started_at=incident_start),), (), evidence, diagnosis, proposal, 2450.0
    )


def fences_balanced(text: str) -> bool:
    return text.count("```") % 2 == 0


def test_body_answers_what_why_and_what_to_change() -> None:
    body = issue_body(make_problem(), max_chars=GITHUB_BODY_LIMIT)
    sections = [line for line in body.splitlines() if line.startswith("### ")]
    change = (
        "### What to change: Route through a TargetServer load balancer with a health monitor and a failover"
    )
    assert sections[:2] == ["### What is slow", "### Why"]
    assert sections[2] == change + " region"
    assert "**target-bound**" in body
    assert "| Target response time | 200 ms | 2,400 ms | x12.0 |" in body
    assert re.search(rf"`[▁▂▃▄▅▆▇█]+{SPARK_MARK}[▁▂▃▄▅▆▇█]+`", body)
    assert "```xml\n<HTTPTargetConnection>" in body and "```json" in body
    assert (
        "`POST https://apigee.googleapis.com/v1/organizations/shop-prod-417/environments/prod/targetservers"
        in body
    )
    assert "https://console.cloud.google.com/apigee/proxies/orders-v1/overview?project=shop-prod-417" in body
    assert "gatehouse-fp-" in body and "<details>" in body and fences_balanced(body)


def test_title_is_short_and_specific() -> None:
    text = title(make_problem(), 200)
    assert text.startswith("[gatehouse] orders-v1 (prod) is slow, target-bound: ")
    assert len(title(make_problem(), 60)) == 60


@pytest.mark.parametrize("limit", [GITHUB_BODY_LIMIT, JIRA_BODY_LIMIT, 8_000, 2_000])
def test_long_evidence_is_trimmed_to_the_limit_with_a_note(limit: int) -> None:
    problem = make_problem(baseline=24 * 60, incident=600)  # 34 hours of minutes
    body = issue_body(problem, max_chars=limit)
    assert len(body) <= limit
    assert fences_balanced(body)
    if limit >= 8_000:
        assert "earlier row(s) omitted" in body
        assert "### What to change" in body  # the proposal survives, rows go first
        last_row = [line for line in body.splitlines() if line.startswith("| 2025-")][-1]
        assert "incident" in last_row  # the most recent minutes are kept
    else:
        assert "truncated to stay under 2,000 characters" in body


def test_short_evidence_is_not_trimmed() -> None:
    body = issue_body(make_problem(), max_chars=GITHUB_BODY_LIMIT)
    assert "omitted" not in body and "truncated" not in body


def test_untrusted_text_is_escaped_and_mentions_defused() -> None:
    nasty = make_incident(
        policy="@platform-team [click](https://evil.example) <img src=x>",
        summary="line1\nline2 | ``` `code` **bold** @someone",
    )
    body = issue_body(make_problem(opened=(nasty,)), max_chars=GITHUB_BODY_LIMIT)
    assert "@platform-team" not in body and "@\u200bplatform-team" in body
    assert "\\[click\\]" in body and "\\<img src=x\\>" in body
    assert "line1 line2 \\| \\`\\`\\`" in body
    assert fences_balanced(body)


def test_non_https_incident_links_are_dropped() -> None:
    body = issue_body(
        make_problem(opened=(make_incident(url="javascript:alert(1)"),)), max_chars=GITHUB_BODY_LIMIT
    )
    assert "javascript:" not in body


def test_linked_ticket_and_cleared_section() -> None:
    problem = dataclasses.replace(
        make_problem(), closed=(make_incident(state="closed", ended_at=START + 7200, observed_value="900"),)
    )
    body = issue_body(
        problem,
        max_chars=GITHUB_BODY_LIMIT,
        previous="https://github.com/o/r/issues/12",
        previous_reason="re-fired after 9 days",
    )
    assert body.splitlines()[1].startswith(
        "> Follows <https://github.com/o/r/issues/12>: re-fired after 9 days"
    )
    assert "**Cleared** at 2025-03-14 16:00 UTC: incident [0.abc]" in body and "last value 900 ms" in body


def test_update_comment_summarises_refires_and_clears() -> None:
    problem = make_problem()
    refires = [make_incident(incident_id=f"0.r{i}") for i in range(12)]
    cleared = [make_incident(incident_id="0.old", state="closed", ended_at=START + 5000)]
    comment = update_comment(
        problem,
        new_opened=refires,
        new_closed=cleared,
        ticket_proposal="target-timeouts",
        reason="12 new incident(s); ticket 12 is open",
        max_chars=GITHUB_BODY_LIMIT,
    )
    assert comment.count("**Re-fired**") == 1 and " and 2 more" in comment
    assert "Peak latency 2,450 ms" in comment
    assert "different change: **Route through a TargetServer" in comment
    assert "**Cleared** at" in comment and "0.old" in comment
    same = update_comment(
        problem,
        new_opened=[],
        new_closed=cleared,
        ticket_proposal=None,
        reason="cleared",
        max_chars=GITHUB_BODY_LIMIT,
    )
    assert "Re-fired" not in same and "different change" not in same


def test_pending_merge() -> None:
    assert pending_merge("a", "a", 100) == "a"
    merged = pending_merge("now", "before", 1000)
    assert merged.startswith("now") and "not posted" in merged and merged.endswith("before")
    assert len(pending_merge("x" * 3000, "y" * 3000, 2000)) <= 2000


def digest_items(n: int) -> list[DigestItem]:
    return [
        DigestItem(
            f"gatehouse-fp-{i:012x}",
            f"k{i}",
            f"proxy-{i}",
            "prod",
            "proxy",
            "target-timeouts",
            2000.0 + i,
            None,
        )
        for i in range(n)
    ]


def test_digest_lists_every_fingerprint_and_fits() -> None:
    body = digest_body(digest_items(15), bucket="2025031414", cap=5, omitted=0, max_chars=GITHUB_BODY_LIMIT)
    assert "More than 5 latency problems" in body and "2025-03-14 14:00 UTC" in body
    assert sum(1 for line in body.splitlines() if line.startswith("| `gatehouse-fp-")) == 15
    big = digest_body(digest_items(2000), bucket="2025031414", cap=5, omitted=7, max_chars=JIRA_BODY_LIMIT)
    assert len(big) <= JIRA_BODY_LIMIT and "row(s) omitted" in big and "_7 more not listed._" in big
    comment = digest_comment(digest_items(2), omitted=0, max_chars=GITHUB_BODY_LIMIT)
    assert "2 more problem(s)" in comment


def test_digest_item_round_trip() -> None:
    item = digest_items(1)[0]
    assert DigestItem.from_doc(item.as_doc()) == item
    assert DigestItem.from_doc({"peak_ms": True}).peak_ms is None
