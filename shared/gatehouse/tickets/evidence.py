"""Evidence from the Apigee stats API: what latency, traffic and errors did around an incident.

A ticket that only repeats "latency above threshold" tells the owner nothing they did not already
know. One stats call (``timeUnit=minute``) covering a baseline window before the incident and the
incident window itself is enough to say whether the backend, the proxy's own policies or a traffic
spike made it slow. The API returns every value as a string, timestamps as epoch milliseconds (not
necessarily in order), ``"0.0"`` averages for minutes without traffic, and adds ``global-avg-*``
metrics whenever an average is requested; without ``timeUnit`` each metric has a single bare value.
Parsing is lenient: unusable parts are skipped and noted, never raised, because a ticket with
partial evidence beats no ticket.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gatehouse.tickets.fingerprint import Family

SELECT: tuple[str, ...] = (
    "sum(message_count)",
    "sum(is_error)",
    "avg(total_response_time)",
    "avg(target_response_time)",
    "avg(request_processing_latency)",
    "avg(response_processing_latency)",
)
_FIELDS = {
    "sum(message_count)": "requests",
    "sum(is_error)": "errors",
    "avg(total_response_time)": "total_ms",
    "avg(target_response_time)": "target_ms",
    "avg(request_processing_latency)": "request_ms",
    "avg(response_processing_latency)": "response_ms",
}
_GLOBAL_PREFIX = "global-avg-"
_MINUTE_MS = 60_000
SPARK_BLOCKS = "▁▂▃▄▅▆▇█"
SPARK_GAP = "·"
SPARK_MARK = "│"


@dataclass(frozen=True)
class Point:
    """One minute of one proxy (``minute`` None: the single total of a query without timeUnit)."""

    minute: int | None  # epoch milliseconds at the start of the minute
    requests: float | None = None
    errors: float | None = None
    total_ms: float | None = None
    target_ms: float | None = None
    request_ms: float | None = None
    response_ms: float | None = None


@dataclass(frozen=True)
class ParsedStats:
    points: tuple[Point, ...] = ()  # ascending by minute
    totals: Point | None = None
    global_averages: Mapping[str, float] = field(default_factory=dict)
    problems: tuple[str, ...] = ()


def parse_stats(doc: object, proxy: str | None = None) -> ParsedStats:
    """Read a ``GoogleCloudApigeeV1Stats`` document for one proxy (or the environment's totals)."""
    problems: list[str] = []
    if not isinstance(doc, Mapping):
        return ParsedStats(problems=("stats response is not a JSON object",))
    meta = doc.get("metaData")
    if isinstance(meta, Mapping) and isinstance(meta.get("errors"), list):
        problems.extend(f"analytics reported: {str(err)[:200]}" for err in meta["errors"][:5])
    metrics: list[Mapping[str, Any]] = []
    for env in _list(doc.get("environments")):
        dims = env.get("dimensions")
        if isinstance(dims, list):
            metrics.extend(_dimension_metrics(dims, proxy, problems))
        else:
            metrics.extend(_list(env.get("metrics")))

    by_minute: dict[int, dict[str, float]] = {}
    totals: dict[str, float] = {}
    global_averages: dict[str, float] = {}
    skipped = 0
    for metric in metrics:
        name = metric.get("name")
        values = metric.get("values")
        if not isinstance(name, str) or not isinstance(values, list):
            skipped += 1
            continue
        if name.startswith(_GLOBAL_PREFIX):
            number = _number(values[0]) if values else None
            if number is not None:
                global_averages[name] = number
            continue
        target = _FIELDS.get(name)
        if target is None:
            continue  # a metric this module does not use
        for item in values:
            if isinstance(item, Mapping):
                minute, number = _minute(item.get("timestamp")), _number(item.get("value"))
                if minute is None or number is None:
                    skipped += 1
                    continue
                by_minute.setdefault(minute, {})[target] = number
            else:
                number = _number(item)
                if number is None:
                    skipped += 1
                    continue
                totals[target] = number
    if skipped:
        problems.append(f"{skipped} unreadable stats value(s) skipped")
    points = tuple(Point(minute, **values) for minute, values in sorted(by_minute.items()))
    return ParsedStats(
        points=points,
        totals=Point(None, **totals) if totals else None,
        global_averages=global_averages,
        problems=tuple(problems),
    )


def _dimension_metrics(dims: list[Any], proxy: str | None, problems: list[str]) -> list[Mapping[str, Any]]:
    usable = [d for d in dims if isinstance(d, Mapping)]
    if proxy is not None:
        matching = [d for d in usable if d.get("name") == proxy]
        if matching:
            usable = matching
        elif len(usable) > 1:
            problems.append(f"no stats dimension named {proxy!r}")
            return []
    out: list[Mapping[str, Any]] = []
    for dim in usable:
        out.extend(_list(dim.get("metrics")))
    return out


def _list(value: object) -> list[Mapping[str, Any]]:
    return [item for item in value if isinstance(item, Mapping)] if isinstance(value, list) else []


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    elif isinstance(value, int | float):
        number = float(value)
    else:
        return None
    return number if math.isfinite(number) else None


def _minute(value: object) -> int | None:
    number = _number(value)
    if number is None or number < 0:
        return None
    return int(number) // _MINUTE_MS * _MINUTE_MS


# ---------------------------------------------------------------------------------------- windows


@dataclass(frozen=True)
class WindowStats:
    """Aggregates of one window ``[start, end)`` (epoch seconds); latencies are request-weighted."""

    start: int
    end: int
    minutes: int = 0  # minutes with a data point
    requests: float = 0.0
    errors: float | None = None
    total_ms: float | None = None
    target_ms: float | None = None
    request_ms: float | None = None
    response_ms: float | None = None
    peak_total_ms: float | None = None
    peak_target_ms: float | None = None
    peak_rpm: float | None = None  # busiest minute

    @property
    def rpm(self) -> float | None:
        return self.requests / self.minutes if self.minutes else None

    @property
    def error_rate(self) -> float | None:
        if self.errors is None or not self.requests:
            return None
        return self.errors / self.requests

    @property
    def overhead_ms(self) -> float | None:
        """Time spent in the proxy itself: total minus target."""
        if self.total_ms is None or self.target_ms is None:
            return None
        return max(self.total_ms - self.target_ms, 0.0)


def window(points: Iterable[Point], start: int, end: int) -> WindowStats:
    """Aggregate the timestamped points that fall in ``[start, end)``."""
    inside = [p for p in points if p.minute is not None and start * 1000 <= p.minute < end * 1000]
    if not inside:
        return WindowStats(start, end)
    errors = [p.errors for p in inside if p.errors is not None]
    counts = [p.requests for p in inside if p.requests is not None]
    return WindowStats(
        start=start,
        end=end,
        minutes=len(inside),
        requests=sum(p.requests or 0.0 for p in inside),
        errors=sum(errors) if errors else None,
        total_ms=_weighted(inside, "total_ms"),
        target_ms=_weighted(inside, "target_ms"),
        request_ms=_weighted(inside, "request_ms"),
        response_ms=_weighted(inside, "response_ms"),
        peak_total_ms=_peak(inside, "total_ms"),
        peak_target_ms=_peak(inside, "target_ms"),
        peak_rpm=max(counts) if counts else None,
    )


def _served(point: Point, value: float | None) -> bool:
    """A minute counts towards latency only if it served traffic (Apigee reports 0.0 otherwise)."""
    if value is None:
        return False
    return point.requests > 0 if point.requests is not None else value > 0


def _weighted(points: Sequence[Point], name: str) -> float | None:
    pairs = [(getattr(p, name), p.requests) for p in points if _served(p, getattr(p, name))]
    if not pairs:
        return None
    weights = [w if w is not None else 1.0 for _, w in pairs]
    return float(sum(v * w for (v, _), w in zip(pairs, weights, strict=True)) / sum(weights))


def _peak(points: Sequence[Point], name: str) -> float | None:
    values = [getattr(p, name) for p in points if _served(p, getattr(p, name))]
    return max(values) if values else None


# --------------------------------------------------------------------------------------- evidence


@dataclass(frozen=True)
class Evidence:
    """Baseline and incident windows of one proxy, plus the minutes behind them."""

    baseline: WindowStats
    incident: WindowStats
    points: tuple[Point, ...]
    problems: tuple[str, ...] = ()

    @property
    def has_data(self) -> bool:
        return self.incident.minutes > 0

    def peak_ms(self, family: Family) -> float | None:
        """Worst minute of the incident window for the metric the alert watches."""
        return self.incident.peak_target_ms if family == "target" else self.incident.peak_total_ms


def build_evidence(
    parsed: ParsedStats, *, baseline_start: int, incident_start: int, incident_end: int
) -> Evidence:
    baseline = window(parsed.points, baseline_start, incident_start)
    incident = window(parsed.points, incident_start, incident_end)
    points = tuple(
        p
        for p in parsed.points
        if p.minute is not None and baseline_start * 1000 <= p.minute < incident_end * 1000
    )
    problems = list(parsed.problems)
    if not parsed.points and parsed.totals is not None:
        problems.append("stats came without timeUnit: no per-minute series")
    elif not incident.minutes:
        problems.append("no analytics data in the incident window (analytics lags a few minutes)")
    return Evidence(baseline, incident, points, tuple(problems))


# -------------------------------------------------------------------------------------- sparkline


def sparkline(values: Sequence[float | None], *, width: int = 60, top: float | None = None) -> str:
    """``values`` as ▁..█ blocks scaled from 0 to ``top`` (default: their max); gaps as ``·``.

    Longer series are folded to ``width`` characters keeping each bucket's maximum, so peaks
    survive. Zero is the floor, not the minimum, so a flat series reads flat.
    """
    if not values or width <= 0:
        return ""
    folded = _fold(values, width)
    present = [v for v in folded if v is not None]
    ceiling = top if top is not None else (max(present) if present else 0.0)
    out = []
    for value in folded:
        if value is None:
            out.append(SPARK_GAP)
        elif ceiling <= 0:
            out.append(SPARK_BLOCKS[0])
        else:
            level = round(min(max(value, 0.0), ceiling) / ceiling * (len(SPARK_BLOCKS) - 1))
            out.append(SPARK_BLOCKS[level])
    return "".join(out)


def _fold(values: Sequence[float | None], width: int) -> list[float | None]:
    if len(values) <= width:
        return list(values)
    out: list[float | None] = []
    for i in range(width):
        chunk = [
            v for v in values[i * len(values) // width : (i + 1) * len(values) // width] if v is not None
        ]
        out.append(max(chunk) if chunk else None)
    return out


def minute_series(evidence: Evidence, family: Family) -> tuple[list[float | None], list[float | None]]:
    """Per-minute latency of the watched metric: (baseline minutes, incident minutes), gaps as None."""
    name = "target_ms" if family == "target" else "total_ms"
    by_minute = {p.minute: getattr(p, name) for p in evidence.points if _served(p, getattr(p, name))}

    def span(stats: WindowStats) -> list[float | None]:
        first = stats.start // 60 * 60_000
        return [by_minute.get(first + i * _MINUTE_MS) for i in range(max(0, (stats.end - stats.start) // 60))]

    return span(evidence.baseline), span(evidence.incident)


def latency_sparkline(evidence: Evidence, family: Family, *, width: int = 60) -> str:
    """Baseline and incident latency on one scale, separated by ``│`` where the incident starts."""
    before, during = minute_series(evidence, family)
    present = [v for v in (*before, *during) if v is not None]
    if not present:
        return ""
    top = max(present)
    total = len(before) + len(during)
    before_width = round(width * len(before) / total) if before else 0
    if before and not before_width:
        before_width = 1
    left = sparkline(before, width=before_width, top=top)
    right = sparkline(during, width=max(width - before_width, 1), top=top)
    return f"{left}{SPARK_MARK}{right}" if left else right


# ------------------------------------------------------------------------------------- formatting


def fmt_ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f} ms"


def fmt_ratio(value: float | None) -> str:
    return "n/a" if value is None else f"x{value:.1f}"


def fmt_percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.1f}%"


def ratio(new: float | None, old: float | None) -> float | None:
    """``new / old``; None when either is unknown or ``old`` is zero."""
    if new is None or old is None or old <= 0:
        return None
    return new / old
