"""The health gate: each proxy's window after its deploy against the same proxy's window before.

Measures (from the Apigee stats API, grouped by ``response_status_code``): the rate of 401/403
answers, the rate of other 4xx, the rate of 5xx, the rate of target errors (``sum(target_error)``),
and the average total and target latency (``avg(total_response_time)``,
``avg(target_response_time)``; the stats API offers no percentiles).

Rules, chosen against what users of Flagger, Argo Rollouts and Kayenta complain about:

- Too few requests after the deploy is **inconclusive**, never a pass (and never a silent halt:
  the wave pauses for a person only when more proxies are inconclusive than allowed).
- A rate measure fails when it rose by more than its absolute threshold *and*, where the baseline
  is above zero, by more than its ratio. A baseline of zero errors makes the ratio infinite, so
  only the absolute rise counts: a burst of 401s against a clean baseline fails, and nothing is
  ever divided by zero.
- A baseline without enough traffic cannot clear a proxy, but it can condemn one: the after-window
  is held against a zero-error baseline, and a proxy that would fail even so fails; otherwise it
  is inconclusive.
- Latency fails when the average rose by more than its milliseconds *and* by more than its ratio;
  a latency-only regression fails on its own.

Every verdict keeps the numbers of every measure and a one-line reason.

Pure module.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Result = Literal["pass", "fail", "inconclusive"]

RATE_MEASURES = ("auth_errors", "client_errors", "server_errors", "target_errors")
LATENCY_MEASURES = ("total_ms", "target_ms")
LABELS = {
    "auth_errors": "401/403 rate",
    "client_errors": "other 4xx rate",
    "server_errors": "5xx rate",
    "target_errors": "target error rate",
    "total_ms": "avg total latency",
    "target_ms": "avg target latency",
}


@dataclass(frozen=True)
class Window:
    """Totals of one proxy over one window."""

    requests: float = 0.0
    auth_errors: float = 0.0  # 401 and 403
    client_errors: float = 0.0  # other 4xx
    server_errors: float = 0.0  # 5xx
    target_errors: float = 0.0
    total_ms: float | None = None  # request-weighted average
    target_ms: float | None = None

    def rate(self, measure: str) -> float:
        count = float(getattr(self, measure))
        return count / self.requests if self.requests > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("requests", *RATE_MEASURES, *LATENCY_MEASURES)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Window:
        def num(key: str) -> float:
            value = data.get(key)
            return float(value) if isinstance(value, int | float) else 0.0

        def opt(key: str) -> float | None:
            value = data.get(key)
            return float(value) if isinstance(value, int | float) else None

        return cls(
            num("requests"),
            num("auth_errors"),
            num("client_errors"),
            num("server_errors"),
            num("target_errors"),
            opt("total_ms"),
            opt("target_ms"),
        )


@dataclass(frozen=True)
class RateThreshold:
    max_increase: float  # absolute rise of the rate (0.01 = one percentage point)
    max_ratio: float  # after / before, where before > 0


@dataclass(frozen=True)
class LatencyThreshold:
    max_increase_ms: float
    max_ratio: float


@dataclass(frozen=True)
class Thresholds:
    min_requests: int = 50
    auth_errors: RateThreshold = RateThreshold(0.005, 1.5)
    client_errors: RateThreshold = RateThreshold(0.02, 1.5)
    server_errors: RateThreshold = RateThreshold(0.01, 1.5)
    target_errors: RateThreshold = RateThreshold(0.01, 1.5)
    total_ms: LatencyThreshold = LatencyThreshold(100.0, 1.25)
    target_ms: LatencyThreshold = LatencyThreshold(100.0, 1.25)


@dataclass(frozen=True)
class Check:
    """One measure of one verdict: its numbers and whether it failed."""

    measure: str
    before: float | None
    after: float | None
    failed: bool
    limit: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "measure": self.measure,
            "before": self.before,
            "after": self.after,
            "failed": self.failed,
            "limit": self.limit,
        }


@dataclass(frozen=True)
class Verdict:
    result: Result
    reason: str
    before: Window
    after: Window
    checks: tuple[Check, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "result": self.result,
            "reason": self.reason,
            "before": self.before.to_dict(),
            "after": self.after.to_dict(),
            "checks": [c.to_dict() for c in self.checks],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Verdict:
        result = data.get("result")
        checks = tuple(
            Check(
                str(c.get("measure")),
                c.get("before"),
                c.get("after"),
                bool(c.get("failed")),
                str(c.get("limit") or ""),
            )
            for c in data.get("checks") or []
            if isinstance(c, Mapping)
        )
        return cls(
            result if result in ("pass", "fail", "inconclusive") else "inconclusive",
            str(data.get("reason") or ""),
            Window.from_dict(data.get("before") or {}),
            Window.from_dict(data.get("after") or {}),
            checks,
        )


def _rate_check(measure: str, before: Window, after: Window, limit: RateThreshold) -> Check:
    old, new = before.rate(measure), after.rate(measure)
    rose = new - old > limit.max_increase
    # a zero baseline makes any rise infinitely large relative to it: only the absolute rise counts
    relative = old == 0 or new / old > limit.max_ratio
    return Check(
        measure,
        round(old, 6),
        round(new, 6),
        rose and relative,
        f"+{limit.max_increase:g} and x{limit.max_ratio:g}",
    )


def _latency_check(measure: str, before: Window, after: Window, limit: LatencyThreshold) -> Check:
    old, new = getattr(before, measure), getattr(after, measure)
    failed = False
    if new is not None and old is not None:
        failed = new - old > limit.max_increase_ms and (old <= 0 or new / old > limit.max_ratio)
    return Check(measure, old, new, failed, f"+{limit.max_increase_ms:g} ms and x{limit.max_ratio:g}")


def judge(before: Window, after: Window, thresholds: Thresholds = Thresholds()) -> Verdict:
    """One proxy's verdict (module docstring)."""
    if after.requests < thresholds.min_requests:
        return Verdict(
            "inconclusive",
            f"{after.requests:g} request(s) after the deploy, fewer than the "
            f"{thresholds.min_requests} needed to judge",
            before,
            after,
        )
    no_baseline = before.requests < thresholds.min_requests
    baseline = Window() if no_baseline else before
    checks = [
        *(_rate_check(m, baseline, after, getattr(thresholds, m)) for m in RATE_MEASURES),
        *(_latency_check(m, baseline, after, getattr(thresholds, m)) for m in LATENCY_MEASURES),
    ]
    failed = [c for c in checks if c.failed]
    if failed:
        worst = "; ".join(
            f"{LABELS[c.measure]} {_fmt(c.measure, c.before)} -> {_fmt(c.measure, c.after)} (limit {c.limit})"
            for c in failed
        )
        prefix = "no baseline traffic, and against a clean baseline: " if no_baseline else ""
        return Verdict("fail", prefix + worst, before, after, tuple(checks))
    if no_baseline:
        return Verdict(
            "inconclusive",
            f"{before.requests:g} request(s) before the deploy, fewer than the "
            f"{thresholds.min_requests} needed for a baseline (nothing failed against a clean one)",
            before,
            after,
            tuple(checks),
        )
    return Verdict("pass", "every measure within its limits", before, after, tuple(checks))


def _fmt(measure: str, value: float | None) -> str:
    if value is None:
        return "n/a"
    if measure in LATENCY_MEASURES:
        return f"{value:.0f} ms"
    return f"{value * 100:.2f}%"


@dataclass(frozen=True)
class WaveJudgement:
    result: Literal["pass", "fail", "pause"]
    reason: str
    failed: tuple[str, ...] = ()
    inconclusive: tuple[str, ...] = ()
    verdicts: Mapping[str, Verdict] = field(default_factory=dict)


def allowed_inconclusive(spec: str, size: int) -> int:
    """``"25%"`` of a wave of ``size`` (rounded down) or an absolute count."""
    text = spec.strip()
    if text.endswith("%"):
        return int(size * float(text[:-1]) / 100)
    return int(text)


def judge_wave(verdicts: Mapping[str, Verdict], max_inconclusive: str = "25%") -> WaveJudgement:
    """A wave fails when any proxy fails; pauses for a person when more proxies are inconclusive
    than ``max_inconclusive`` allows; passes otherwise."""
    failed = tuple(sorted(p for p, v in verdicts.items() if v.result == "fail"))
    unsure = tuple(sorted(p for p, v in verdicts.items() if v.result == "inconclusive"))
    allowed = allowed_inconclusive(max_inconclusive, len(verdicts))
    if failed:
        return WaveJudgement(
            "fail", f"{len(failed)} of {len(verdicts)} proxies failed the gate", failed, unsure, verdicts
        )
    if len(unsure) > allowed:
        return WaveJudgement(
            "pause",
            f"{len(unsure)} of {len(verdicts)} proxies inconclusive (at most {allowed} allowed); "
            "a person decides: advance or abort",
            failed,
            unsure,
            verdicts,
        )
    return WaveJudgement(
        "pass", f"{len(verdicts) - len(unsure)} passed, {len(unsure)} inconclusive", failed, unsure, verdicts
    )


def windows_from_stats(doc: object, proxies: Sequence[str]) -> tuple[dict[str, Window], list[str]]:
    """Read a stats document grouped by ``apiproxy,response_status_code`` (no timeUnit) into one
    window per proxy; proxies without rows get an empty window. Also returns problems noticed."""
    problems: list[str] = []
    acc: dict[str, dict[str, float]] = {p: {} for p in proxies}
    if not isinstance(doc, Mapping):
        return {p: Window() for p in proxies}, ["stats response is not a JSON object"]
    for env in doc.get("environments") or []:
        if not isinstance(env, Mapping):
            continue
        for dim in env.get("dimensions") or []:
            if not isinstance(dim, Mapping):
                continue
            names = dim.get("individualNames")
            if not isinstance(names, list) or len(names) < 2:
                names = str(dim.get("name", "")).split(",")
            if len(names) < 2 or names[0] not in acc:
                continue
            proxy, code = str(names[0]), str(names[1])
            values: dict[str, float] = {}
            for metric in dim.get("metrics") or []:
                if not isinstance(metric, Mapping) or not isinstance(metric.get("values"), list):
                    continue
                raw = metric["values"][0] if metric["values"] else None
                if isinstance(raw, Mapping):
                    raw = raw.get("value")
                try:
                    values[str(metric.get("name"))] = float(raw)  # type: ignore[arg-type]
                except (TypeError, ValueError):
                    problems.append(f"unreadable {metric.get('name')} for {proxy}")
            _add(acc[proxy], code, values)
    return {p: _window(a) for p, a in acc.items()}, problems


def _add(acc: dict[str, float], code: str, values: Mapping[str, float]) -> None:
    n = values.get("sum(message_count)", 0.0)
    acc["requests"] = acc.get("requests", 0.0) + n
    status = int(code) if code.isdigit() else 0
    kind = (
        "auth_errors"
        if status in (401, 403)
        else "client_errors"
        if 400 <= status < 500
        else "server_errors"
        if status >= 500
        else None
    )
    if kind:
        acc[kind] = acc.get(kind, 0.0) + n
    acc["target_errors"] = acc.get("target_errors", 0.0) + values.get("sum(target_error)", 0.0)
    for metric, name in (("avg(total_response_time)", "total"), ("avg(target_response_time)", "target")):
        if metric in values and n > 0:
            acc[f"{name}_sum"] = acc.get(f"{name}_sum", 0.0) + values[metric] * n
            acc[f"{name}_n"] = acc.get(f"{name}_n", 0.0) + n


def _window(acc: Mapping[str, float]) -> Window:
    def avg(name: str) -> float | None:
        n = acc.get(f"{name}_n", 0.0)
        return round(acc[f"{name}_sum"] / n, 3) if n else None

    return Window(
        acc.get("requests", 0.0),
        acc.get("auth_errors", 0.0),
        acc.get("client_errors", 0.0),
        acc.get("server_errors", 0.0),
        acc.get("target_errors", 0.0),
        avg("total"),
        avg("target"),
    )


STATS_SELECT = (
    "sum(message_count)",
    "sum(target_error)",
    "avg(total_response_time)",
    "avg(target_response_time)",
)
STATS_DIMENSIONS = ("apiproxy", "response_status_code")
