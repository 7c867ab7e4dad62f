"""gatehouse.tickets.evidence: stats parsing (strings, timeUnit or not, extras, gaps), windows, sparklines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gatehouse.tickets.evidence import (
    SPARK_BLOCKS,
    SPARK_GAP,
    SPARK_MARK,
    Point,
    build_evidence,
    latency_sparkline,
    parse_stats,
    sparkline,
    window,
)
from tests.tickets_fakes import scenario_minutes, stats_response

FIXTURES = Path(__file__).parent / "fixtures" / "tickets"
START = 1_741_960_800  # 14:00 UTC
CORPUS_STATS = (
    Path(__file__).parents[2]
    / "shared"
    / "corpus"
    / "apigee-api"
    / "stats-response-timeUnit-day-with-metaData.json"
)


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def test_minute_series_with_string_values_sorted_ascending() -> None:
    parsed = parse_stats(load("stats-minute-descending.json"), "orders-v1")
    assert [p.minute for p in parsed.points] == [(START + i * 60) * 1000 for i in range(4)]
    assert parsed.points[2] == Point((START + 120) * 1000, 300.0, 6.0, 1000.0, 900.0)
    assert parsed.global_averages == {
        "global-avg-total_response_time": 566.6667,
        "global-avg-target_response_time": 483.3333,
    }
    assert parsed.totals is None
    assert parsed.problems == ()


def test_without_time_unit_values_are_bare_strings() -> None:
    parsed = parse_stats(load("stats-no-timeunit.json"), "orders-v1")
    assert parsed.points == ()
    assert parsed.totals == Point(None, requests=3600.0, total_ms=39.0)
    evidence = build_evidence(
        parsed, baseline_start=START, incident_start=START + 60, incident_end=START + 120
    )
    assert not evidence.has_data
    assert any("without timeUnit" in p for p in evidence.problems)


def test_environment_totals_and_reported_errors() -> None:
    parsed = parse_stats(load("stats-environment-totals-error.json"))
    assert parsed.points == (Point(START * 1000, requests=12.0),)
    assert any("Query timed out" in p for p in parsed.problems)
    assert any("1 unreadable" in p for p in parsed.problems)


@pytest.mark.parametrize(
    "doc",
    [
        None,
        [],
        "text",
        {},
        {"environments": None},
        {"environments": [{"name": "prod"}]},
        {"environments": [{"dimensions": [{"name": "orders-v1", "metrics": [{"name": 3, "values": "x"}]}]}]},
        {
            "environments": [
                {"dimensions": [{"metrics": [{"name": "avg(total_response_time)", "values": [{}]}]}]}
            ]
        },
        {
            "environments": [
                {"metrics": [{"name": "sum(message_count)", "values": [{"timestamp": "x", "value": "1"}]}]}
            ]
        },
        {
            "environments": [
                {"metrics": [{"name": "sum(message_count)", "values": [{"timestamp": 1, "value": "NaN"}]}]}
            ]
        },
        {"environments": [{"metrics": [{"name": "sum(message_count)", "values": [True, None, {"a": 1}]}]}]},
    ],
)
def test_garbage_never_raises(doc: object) -> None:
    parsed = parse_stats(doc, "orders-v1")
    assert parsed.points == ()


def test_empty_and_missing_proxy() -> None:
    assert parse_stats(load("stats-empty.json"), "orders-v1").points == ()
    two = {
        "environments": [
            {
                "dimensions": [
                    {"name": "a", "metrics": [{"name": "sum(message_count)", "values": ["1"]}]},
                    {"name": "b", "metrics": [{"name": "sum(message_count)", "values": ["2"]}]},
                ]
            }
        ]
    }
    assert parse_stats(two, "b").totals == Point(None, requests=2.0)
    missing = parse_stats(two, "c")
    assert missing.totals is None
    assert any("no stats dimension" in p for p in missing.problems)


@pytest.mark.skipif(not CORPUS_STATS.exists(), reason="shared corpus not present")
def test_real_stats_response_from_the_corpus() -> None:
    parsed = parse_stats(json.loads(CORPUS_STATS.read_text()), "unattended")
    assert len(parsed.points) == 3
    assert parsed.points[0].minute == 1581429600000  # sorted although the response is newest-first
    assert parsed.points[-1].total_ms == pytest.approx(1291.8889)
    assert "global-avg-total_response_time" in parsed.global_averages


def test_window_aggregates_weight_by_requests_and_skip_idle_minutes() -> None:
    parsed = parse_stats(load("stats-minute-descending.json"), "orders-v1")
    stats = window(parsed.points, START, START + 240)
    assert stats.minutes == 4
    assert stats.requests == 500
    assert stats.rpm == 125
    # (100*200 + 300*1000 + 100*400) / 500; the idle minute's "0.0" does not pull the mean down
    assert stats.total_ms == pytest.approx(720.0)
    target = (100 * 150 + 300 * 900 + 100 * 300) / 500
    assert stats.target_ms == pytest.approx(target)
    assert stats.overhead_ms == pytest.approx(720.0 - target)
    assert stats.peak_total_ms == 1000.0
    assert stats.peak_rpm == 300.0
    assert stats.error_rate == pytest.approx(9 / 500)


def test_window_without_message_count_uses_plain_mean_of_nonzero_minutes() -> None:
    points = [
        Point(START * 1000, total_ms=100.0),
        Point((START + 60) * 1000, total_ms=0.0),
        Point((START + 120) * 1000, total_ms=300.0),
    ]
    stats = window(points, START, START + 180)
    assert stats.total_ms == 200.0
    assert stats.error_rate is None
    assert stats.requests == 0


def test_empty_window() -> None:
    stats = window([], START, START + 60)
    assert stats.minutes == 0 and stats.rpm is None and stats.total_ms is None and stats.overhead_ms is None


def test_evidence_splits_baseline_and_incident() -> None:
    doc = stats_response("orders-v1", scenario_minutes("target", baseline=30, incident=10), start=START)
    evidence = build_evidence(
        parse_stats(doc, "orders-v1"),
        baseline_start=START,
        incident_start=START + 1800,
        incident_end=START + 2400,
    )
    assert evidence.baseline.minutes == 30 and evidence.incident.minutes == 10
    assert evidence.baseline.total_ms == pytest.approx(250)
    assert evidence.incident.target_ms == pytest.approx(2400)
    assert evidence.peak_ms("proxy") == pytest.approx(2450)
    assert evidence.peak_ms("target") == pytest.approx(2400)
    assert evidence.problems == ()


def test_evidence_notes_missing_incident_data() -> None:
    doc = stats_response("orders-v1", scenario_minutes("calm", baseline=30, incident=0), start=START)
    evidence = build_evidence(
        parse_stats(doc, "orders-v1"),
        baseline_start=START,
        incident_start=START + 1800,
        incident_end=START + 2400,
    )
    assert not evidence.has_data
    assert any("analytics lags" in p for p in evidence.problems)


@pytest.mark.parametrize(
    ("values", "width", "expected"),
    [
        ([], 10, ""),
        ([0.0, 0.0], 10, SPARK_BLOCKS[0] * 2),
        ([1.0, 8.0], 10, SPARK_BLOCKS[1] + SPARK_BLOCKS[7]),
        ([0.0, None, 7.0], 10, SPARK_BLOCKS[0] + SPARK_GAP + SPARK_BLOCKS[7]),
        ([None, None], 10, SPARK_GAP * 2),
        (
            [1.0] * 10 + [9.0] + [1.0] * 9,
            4,
            SPARK_BLOCKS[1] + SPARK_BLOCKS[1] + SPARK_BLOCKS[7] + SPARK_BLOCKS[1],
        ),
    ],
)
def test_sparkline(values: list[float | None], width: int, expected: str) -> None:
    assert sparkline(values, width=width) == expected


def test_sparkline_keeps_peaks_when_folding() -> None:
    values: list[float | None] = [100.0] * 500
    values[377] = 5000.0
    line = sparkline(values, width=50)
    assert len(line) == 50
    assert line.count(SPARK_BLOCKS[-1]) == 1


def test_latency_sparkline_marks_the_incident_start() -> None:
    doc = stats_response("orders-v1", scenario_minutes("target", baseline=60, incident=20), start=START)
    evidence = build_evidence(
        parse_stats(doc, "orders-v1"),
        baseline_start=START,
        incident_start=START + 3600,
        incident_end=START + 4800,
    )
    line = latency_sparkline(evidence, "proxy", width=40)
    before, after = line.split(SPARK_MARK)
    assert len(before) == 30 and len(after) == 10
    assert set(after) == {SPARK_BLOCKS[-1]}
    assert SPARK_BLOCKS[-1] not in before
    empty = build_evidence(
        parse_stats({}), baseline_start=START, incident_start=START + 60, incident_end=START + 120
    )
    assert latency_sparkline(empty, "proxy") == ""
