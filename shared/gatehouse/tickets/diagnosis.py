"""Why a proxy is slow, decided from the evidence with the numbers that justify it.

Three causes call for different routing changes, so they are told apart first:

* traffic-bound: requests per minute rose by the spike factor while latency rose (throttle it);
* target-bound: the backend's response time carries the latency or its rise (route around it);
* proxy-bound: the proxy's own time (total minus target, request/response processing) does.

With a baseline, the cause is whatever explains at least ``dominance`` of the rise; without one, or
when latency was already high before the incident, whatever takes that share of the total. Anything
else is inconclusive and says so rather than guessing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from gatehouse.tickets.evidence import Evidence, WindowStats, fmt_ms, fmt_percent, fmt_ratio, ratio
from gatehouse.tickets.fingerprint import Family
from gatehouse.tickets.settings import TicketSettings

Kind = Literal["target-bound", "proxy-bound", "traffic-bound", "inconclusive"]


@dataclass(frozen=True)
class Thresholds:
    rise: float = 1.5  # incident latency / baseline latency that counts as "rose"
    spike: float = 2.0  # incident traffic / baseline traffic that counts as a spike
    dominance: float = 0.6  # share of the rise (or of the total) that names the cause

    @classmethod
    def from_settings(cls, settings: TicketSettings) -> Thresholds:
        return cls(settings.latency_rise_factor, settings.traffic_spike_factor, settings.dominance)


@dataclass(frozen=True)
class Diagnosis:
    kind: Kind
    headline: str
    reasons: tuple[str, ...] = ()


def diagnose(evidence: Evidence | None, family: Family, thresholds: Thresholds) -> Diagnosis:
    if evidence is None or not evidence.has_data or evidence.incident.total_ms is None:
        if family == "target":
            return Diagnosis(
                "target-bound",
                "The backend is slow: the alert watches target latency, which excludes time in the proxy.",
                ("No analytics data for the incident window; this follows from the alert metric alone.",),
            )
        return Diagnosis(
            "inconclusive", "No analytics data for the incident window, so the cause is unknown."
        )

    base, inc = evidence.baseline, evidence.incident
    context = _context(base, inc)
    rise = ratio(inc.total_ms, base.total_ms)
    if rise is not None and base.total_ms is not None and rise >= thresholds.rise:
        delta = evidence.incident.total_ms - base.total_ms
        return _rose(base, inc, rise=rise, delta=delta, t=thresholds, context=context)
    if rise is not None:
        context = (
            f"Latency was already {fmt_ms(base.total_ms)} before the incident ({fmt_ratio(rise)} now): "
            "a standing problem, judged by where the time goes.",
            *context,
        )
    return _by_share(inc, thresholds, context)


def _rose(
    base: WindowStats, inc: WindowStats, *, rise: float, delta: float, t: Thresholds, context: tuple[str, ...]
) -> Diagnosis:
    traffic = ratio(inc.rpm, base.rpm)
    if traffic is not None and traffic >= t.spike:
        return Diagnosis(
            "traffic-bound",
            f"A traffic spike: {inc.rpm or 0:,.0f} requests/min against {base.rpm or 0:,.0f} before "
            f"({fmt_ratio(traffic)}), while latency rose {fmt_ratio(rise)}.",
            context,
        )
    if inc.target_ms is not None and base.target_ms is not None:
        target_share = (inc.target_ms - base.target_ms) / delta
        if target_share >= t.dominance:
            return Diagnosis(
                "target-bound",
                f"The backend got slower: target response time {fmt_ms(base.target_ms)} → "
                f"{fmt_ms(inc.target_ms)}, {fmt_percent(min(target_share, 1.0))} of the "
                f"{fmt_ms(delta)} rise in total latency.",
                context,
            )
    if inc.overhead_ms is not None and base.overhead_ms is not None:
        proxy_share = (inc.overhead_ms - base.overhead_ms) / delta
        if proxy_share >= t.dominance:
            return Diagnosis(
                "proxy-bound",
                f"The proxy itself got slower: time in the proxy (total - target) "
                f"{fmt_ms(base.overhead_ms)} → {fmt_ms(inc.overhead_ms)}, "
                f"{fmt_percent(min(proxy_share, 1.0))} of the {fmt_ms(delta)} rise.",
                (*_processing(base, inc), *context),
            )
    return Diagnosis(
        "inconclusive",
        f"Latency rose {fmt_ratio(rise)} but neither the backend nor the proxy explains "
        f"{fmt_percent(t.dominance)} of the rise.",
        context,
    )


def _by_share(inc: WindowStats, t: Thresholds, context: tuple[str, ...]) -> Diagnosis:
    if inc.total_ms is None or inc.target_ms is None or inc.total_ms <= 0:
        return Diagnosis(
            "inconclusive", "The analytics have no target response time to split latency by.", context
        )
    share = min(inc.target_ms / inc.total_ms, 1.0)
    if share >= t.dominance:
        return Diagnosis(
            "target-bound",
            f"The backend is slow: target response time {fmt_ms(inc.target_ms)} is {fmt_percent(share)} "
            f"of {fmt_ms(inc.total_ms)} total.",
            context,
        )
    if 1 - share >= t.dominance:
        return Diagnosis(
            "proxy-bound",
            f"The proxy itself is slow: {fmt_ms(inc.overhead_ms)} of {fmt_ms(inc.total_ms)} "
            f"({fmt_percent(1 - share)}) is spent in the proxy, not the backend.",
            (*_processing(None, inc), *context),
        )
    return Diagnosis(
        "inconclusive",
        f"Latency is split between backend ({fmt_percent(share)}) and proxy ({fmt_percent(1 - share)}).",
        context,
    )


def _processing(base: WindowStats | None, inc: WindowStats) -> tuple[str, ...]:
    def line(label: str, before: float | None, now: float | None) -> str:
        if base is None or before is None:
            return f"{label}: {fmt_ms(now)}."
        return f"{label}: {fmt_ms(before)} → {fmt_ms(now)} ({fmt_ratio(ratio(now, before))})."

    lines = []
    if inc.request_ms is not None:
        lines.append(line("Request processing latency", base.request_ms if base else None, inc.request_ms))
    if inc.response_ms is not None:
        lines.append(line("Response processing latency", base.response_ms if base else None, inc.response_ms))
    return tuple(lines)


def _context(base: WindowStats, inc: WindowStats) -> tuple[str, ...]:
    lines = []
    if base.minutes == 0:
        lines.append("No baseline: the analytics have no traffic before the incident.")
    traffic = ratio(inc.rpm, base.rpm)
    if traffic is not None:
        lines.append(f"Traffic {fmt_ratio(traffic)} against the baseline ({inc.rpm or 0:,.0f} requests/min).")
    if inc.error_rate is not None:
        before = f" (baseline {fmt_percent(base.error_rate)})" if base.error_rate is not None else ""
        lines.append(f"Error rate {fmt_percent(inc.error_rate)}{before}.")
    return tuple(lines)
