"""gatehouse.tickets.diagnosis: target-, proxy-, traffic-bound or inconclusive, with the numbers."""

from __future__ import annotations

import pytest

from gatehouse.tickets.diagnosis import Thresholds, diagnose
from gatehouse.tickets.evidence import Evidence, WindowStats

T = Thresholds(rise=1.5, spike=2.0, dominance=0.6)


def ws(
    total: float | None,
    target: float | None,
    rpm: float = 600,
    *,
    request: float | None = 20,
    minutes: int = 10,
) -> WindowStats:
    return WindowStats(
        start=0,
        end=minutes * 60,
        minutes=minutes if total is not None else 0,
        requests=rpm * minutes if total is not None else 0,
        errors=rpm * minutes * 0.01 if total is not None else None,
        total_ms=total,
        target_ms=target,
        request_ms=request,
        response_ms=10,
        peak_total_ms=total,
        peak_target_ms=target,
        peak_rpm=rpm,
    )


def ev(base: WindowStats, inc: WindowStats) -> Evidence:
    return Evidence(base, inc, ())


@pytest.mark.parametrize(
    ("base", "inc", "kind", "headline"),
    [
        # backend got slower: the rise is all target time
        (ws(250, 200), ws(2450, 2400), "target-bound", "target response time 200 ms → 2,400 ms"),
        # proxy got slower: total - target rose, request processing up
        (ws(250, 200, request=20), ws(1900, 210, request=1500), "proxy-bound", "time in the proxy"),
        # traffic spike with rising latency wins over the split
        (ws(250, 200, rpm=600), ws(1200, 1000, rpm=3000), "traffic-bound", "3,000 requests/min"),
        # more traffic but not by the spike factor: the backend explains it
        (ws(250, 200, rpm=600), ws(1200, 1100, rpm=900), "target-bound", "got slower"),
        # a spike without a latency rise is not traffic-bound; judged by shares
        (ws(900, 800, rpm=600), ws(1000, 900, rpm=3000), "target-bound", "is slow"),
        # rise split evenly: neither explains 60%
        (ws(200, 100), ws(1200, 600), "inconclusive", "neither"),
        # already slow before: judged by where the time goes now
        (ws(1800, 1700), ws(2000, 1900), "target-bound", "is slow"),
        (ws(1800, 100), ws(2000, 150), "proxy-bound", "spent in the proxy"),
        (ws(1800, 900), ws(2000, 1000), "inconclusive", "split"),
        # no baseline: shares only
        (ws(None, None), ws(2000, 1900), "target-bound", "is slow"),
        (ws(None, None), ws(2000, None), "inconclusive", "no target response time"),
    ],
)
def test_diagnosis_table(base: WindowStats, inc: WindowStats, kind: str, headline: str) -> None:
    diagnosis = diagnose(ev(base, inc), "proxy", T)
    assert diagnosis.kind == kind
    assert headline in diagnosis.headline


def test_reasons_carry_the_numbers() -> None:
    diagnosis = diagnose(ev(ws(250, 200, request=20), ws(1900, 210, request=1500)), "proxy", T)
    assert "Request processing latency: 20 ms → 1,500 ms (x75.0)." in diagnosis.reasons
    assert any(r.startswith("Error rate 1.0%") for r in diagnosis.reasons)
    chronic = diagnose(ev(ws(1800, 1700), ws(2000, 1900)), "proxy", T)
    assert chronic.reasons[0].startswith("Latency was already 1,800 ms")
    no_base = diagnose(ev(ws(None, None), ws(2000, 1900)), "proxy", T)
    assert any("No baseline" in r for r in no_base.reasons)


@pytest.mark.parametrize(("family", "kind"), [("target", "target-bound"), ("proxy", "inconclusive")])
def test_without_evidence_only_the_alert_metric_speaks(family: str, kind: str) -> None:
    assert diagnose(None, family, T).kind == kind  # type: ignore[arg-type]
    assert diagnose(ev(ws(250, 200), ws(None, None)), family, T).kind == kind  # type: ignore[arg-type]


def test_thresholds_come_from_settings() -> None:
    strict = Thresholds(rise=10.0, spike=2.0, dominance=0.6)
    # x9.8 is not a rise at factor 10: judged by shares instead
    diagnosis = diagnose(ev(ws(250, 200), ws(2450, 2400)), "proxy", strict)
    assert diagnosis.kind == "target-bound"
    assert "is slow" in diagnosis.headline
