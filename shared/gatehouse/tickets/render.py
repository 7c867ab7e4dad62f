"""Ticket titles, bodies and comments as Markdown that fits the tracker.

A ticket answers three questions in order: what is slow, why (diagnosis, an evidence table and a
sparkline), and what to change (the proposal, with the XML or API payload in fenced blocks), then
links and the fingerprint. Updates go to comments, never into the description, so history is
kept and the description cannot grow past the tracker's limit (GitHub: 65,536 characters; Jira:
32,767). Every body is fitted to ``max_chars``: the per-minute table loses its oldest rows first
(with a note saying so), and only if that is not enough is the text cut, with fences closed.
Everything that comes from an incident (policy and condition names, summary, ids, values, its
console ``url``) is untrusted: free text is put on one line, Markdown-escaped (HTML and entities
included) and has its @-mentions, ``#1``/``GH-1`` references and autolinkable URLs defused, so an
alert can neither ping people, nor cross-reference issues, nor inject Markdown or HTML. Only an
``https`` URL on the Cloud console host becomes a link; any other URL is shown as code. The same
rules apply to comments and to the digest, whenever they are rendered.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit

from gatehouse.events import Incident
from gatehouse.tickets.diagnosis import Diagnosis
from gatehouse.tickets.evidence import (
    Evidence,
    WindowStats,
    fmt_ms,
    fmt_percent,
    fmt_ratio,
    latency_sparkline,
    ratio,
)
from gatehouse.tickets.fingerprint import Fingerprint
from gatehouse.tickets.proposal import Proposal

MARKER = "<!-- gatehouse -->"
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|#~&!])")
CONSOLE_HOST = "console.cloud.google.com"  # the only host an incident's link may point at
_URL_SAFE = "/?=&%-._~+,;:"  # kept as is in a link target; everything else is percent-encoded
_ZWSP = "\u200b"
# what GitHub turns into pings, cross-references and links in plain text
_MENTION = re.compile(r"@")
_REFERENCE = re.compile(r"#(?=[0-9])|(?i:\bgh-)(?=[0-9])")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]{0,30}:")
_AUTOLINK = re.compile(r"(?i)(?<=[a-z])(?=://)|(?<=www)(?=\.)")
_MAX_FREE_TEXT = 300
_MAX_INCIDENT_LINKS = 10


@dataclass(frozen=True)
class Problem:
    """Everything a ticket about one fingerprint says."""

    fingerprint: Fingerprint
    opened: tuple[Incident, ...]
    closed: tuple[Incident, ...]
    evidence: Evidence | None
    diagnosis: Diagnosis
    proposal: Proposal
    peak_ms: float | None
    notes: tuple[str, ...] = ()  # why evidence is missing or partial
    organization: str = ""  # the Apigee organization (its project hosts the console pages)


@dataclass(frozen=True)
class DigestItem:
    """One overflowed fingerprint, as listed in the hour's digest ticket (and its ledger document)."""

    label: str
    key: str
    proxy: str
    environment: str
    family: str
    proposal: str
    peak_ms: float | None
    incident_url: str | None

    def as_doc(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "key": self.key,
            "proxy": self.proxy,
            "environment": self.environment,
            "family": self.family,
            "proposal": self.proposal,
            "peak_ms": self.peak_ms,
            "incident_url": self.incident_url,
        }

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> DigestItem:
        def text(name: str) -> str:
            value = doc.get(name)
            return value if isinstance(value, str) else ""

        peak = doc.get("peak_ms")
        return cls(
            label=text("label"),
            key=text("key"),
            proxy=text("proxy"),
            environment=text("environment"),
            family=text("family"),
            proposal=text("proposal"),
            peak_ms=float(peak) if isinstance(peak, int | float) and not isinstance(peak, bool) else None,
            incident_url=text("incident_url") or None,
        )

    @classmethod
    def of(cls, problem: Problem) -> DigestItem:
        fp = problem.fingerprint
        first = (problem.opened or problem.closed or (None,))[0]
        return cls(
            fp.label, fp.key, fp.proxy, fp.environment, fp.family, fp.proposal, problem.peak_ms, _url(first)
        )


# ------------------------------------------------------------------------------------------ tickets


def title(problem: Problem, max_chars: int = 200) -> str:
    fp = problem.fingerprint
    kind = problem.diagnosis.kind
    text = f"[gatehouse] {fp.proxy} ({fp.environment}) is slow, {kind}: {problem.proposal.title}"
    return _clip(" ".join(text.split()), max_chars)


def issue_body(
    problem: Problem, *, max_chars: int, previous: str | None = None, previous_reason: str | None = None
) -> str:
    """The description of a new ticket; ``previous`` links the ticket this one follows."""
    fp = problem.fingerprint
    head = [MARKER]
    if previous:
        head.append(f"> Follows {_ticket_ref(previous)}: {_inline(previous_reason or 're-fired')}.\n")
    head += [
        f"**{_inline(fp.proxy)}** in **{_inline(fp.environment)}** (project `{_code(fp.project)}`) is slow: "
        f"{_inline(problem.diagnosis.headline)}",
        "",
        "### What is slow",
        *_what(problem),
        "",
        "### Why",
        *_why(problem),
        "",
        f"### What to change: {_inline(problem.proposal.title)}",
        *_change(problem.proposal),
        "",
        "### Links",
        *_links(problem),
    ]
    cleared = [_cleared_line(i) for i in problem.closed]
    if cleared:
        head += ["", "### Cleared", *cleared]
    tail = [
        "",
        "",
        "---",
        f"Fingerprint `{fp.label}` (`{_code(fp.key)}`). Opened by gatehouse: re-fires and recoveries are "
        "added as comments and only humans close this ticket. Close it as not planned (or label it "
        "`wontfix`) to silence it until the latency gets markedly worse.",
    ]
    return _fit("\n".join(head), _minute_rows(problem), "\n".join(tail), max_chars)


def update_comment(
    problem: Problem,
    *,
    new_opened: Sequence[Incident],
    new_closed: Sequence[Incident],
    ticket_proposal: str | None,
    reason: str,
    max_chars: int,
) -> str:
    """One comment summarising every re-fire and recovery of this run."""
    lines = [MARKER]
    if new_opened:
        links = ", ".join(_incident_link(i) for i in new_opened[:_MAX_INCIDENT_LINKS])
        more = len(new_opened) - _MAX_INCIDENT_LINKS
        lines.append(f"**Re-fired**: {links}{f' and {more} more' if more > 0 else ''} ({_inline(reason)}).")
        lines.append(f"Peak latency {fmt_ms(problem.peak_ms)}. {_inline(problem.diagnosis.headline)}")
        lines += ["", *_evidence(problem)]
        if ticket_proposal and ticket_proposal != problem.proposal.type:
            lines += [
                "",
                f"The evidence now points to a different change: **{_inline(problem.proposal.title)}**",
                *_change(problem.proposal),
            ]
    for incident in new_closed:
        lines.append(_cleared_line(incident))
    return _fit("\n".join(lines), [], "", max_chars)


def pending_merge(ours: str, earlier: str, max_chars: int) -> str:
    """An update an earlier run recorded but could not post, folded into this run's one comment."""
    if ours == earlier:
        return ours
    return _fit(f"{ours}\n\n---\n_Update recorded earlier but not posted:_\n\n{earlier}", [], "", max_chars)


# ------------------------------------------------------------------------------------------- digest


def digest_title(bucket: str) -> str:
    return f"[gatehouse] latency digest {_hour(bucket)}: problems over the hourly ticket cap"


def digest_body(items: Sequence[DigestItem], *, bucket: str, cap: int, omitted: int, max_chars: int) -> str:
    head = "\n".join(
        [
            MARKER,
            f"More than {cap} latency problems needed a ticket in the hour starting {_hour(bucket)}. "
            "The ones below are listed here instead of getting a ticket each; if one re-fires in a later "
            "hour it gets its own ticket when the cap allows.",
            "",
        ]
    )
    rows = [_digest_row(item) for item in items]
    tail = f"\n\n_{omitted} more not listed._" if omitted else ""
    return _fit(head, rows, tail, max_chars, header=_DIGEST_HEADER)


def digest_comment(items: Sequence[DigestItem], *, omitted: int, max_chars: int) -> str:
    head = f"{MARKER}\n{len(items) + omitted} more problem(s) overflowed this hour:\n"
    tail = f"\n\n_{omitted} more not listed._" if omitted else ""
    return _fit(head, [_digest_row(item) for item in items], tail, max_chars, header=_DIGEST_HEADER)


_DIGEST_HEADER = (
    "| fingerprint | proxy | environment | family | proposal | peak | incident |\n"
    "|---|---|---|---|---|---|---|"
)


def _digest_row(item: DigestItem) -> str:
    link = _url_or_text("incident", item.incident_url, 80) if item.incident_url else ""
    return (
        f"| `{_code(item.label)}` | {_cell(item.proxy)} | {_cell(item.environment)} | {_cell(item.family)} | "
        f"{_cell(item.proposal)} | {fmt_ms(item.peak_ms)} | {link} |"
    )


# ----------------------------------------------------------------------------------------- sections


def _what(problem: Problem) -> list[str]:
    fp = problem.fingerprint
    incidents = (*problem.opened, *problem.closed)
    first = incidents[0] if incidents else None
    rows = [
        ("Proxy", f"`{_code(fp.proxy)}`"),
        ("Environment", f"`{_code(fp.environment)}`"),
    ]
    if first is not None:
        alert = " - ".join(_inline(x) for x in (first.policy, first.condition) if x)
        rows += [
            ("Alert", alert or "n/a"),
            ("Metric", f"`{_code(first.metric or '')}` ({fp.family} latency)"),
            ("Observed", f"{_value_ms(first.observed_value)} (threshold {_value_ms(first.threshold_value)})"),
        ]
        starts = [i.started_at for i in incidents if i.started_at]
        if starts:
            rows.append(("Since", _time(min(starts))))
        if first.summary:
            rows.append(("Summary", _inline(first.summary)))
    rows.append(("Peak latency", fmt_ms(problem.peak_ms)))
    links = ", ".join(_incident_link(i) for i in problem.opened[:_MAX_INCIDENT_LINKS])
    if links:
        rows.append(("Incidents", links))
    return ["| | |", "|---|---|", *(f"| {name} | {value} |" for name, value in rows)]


def _why(problem: Problem) -> list[str]:
    diagnosis = problem.diagnosis
    lines = [f"**{diagnosis.kind}**: {_inline(diagnosis.headline)}"]
    lines += [f"- {_inline(reason)}" for reason in diagnosis.reasons]
    lines += ["", *_evidence(problem)]
    return lines


def _evidence(problem: Problem) -> list[str]:
    evidence = problem.evidence
    notes = [*(evidence.problems if evidence else ()), *problem.notes]
    lines: list[str] = []
    if evidence is not None and evidence.has_data:
        lines += _evidence_table(evidence.baseline, evidence.incident)
        spark = latency_sparkline(evidence, problem.fingerprint.family)
        if spark:
            metric = "target" if problem.fingerprint.family == "target" else "total"
            lines += ["", f"Latency per minute ({metric}; baseline │ incident): `{spark}`"]
    elif not notes:
        notes.append("No analytics evidence.")
    lines += [f"_{_inline(note)}_" for note in notes[:5]]
    return lines


def _evidence_table(base: WindowStats, inc: WindowStats) -> list[str]:
    def row(label: str, before: float | None, now: float | None, fmt: Any) -> str:
        return f"| {label} | {fmt(before)} | {fmt(now)} | {fmt_ratio(ratio(now, before))} |"

    def rpm(value: float | None) -> str:
        return "n/a" if value is None else f"{value:,.0f}"

    return [
        f"| | baseline ({_minutes(base)}) | incident ({_minutes(inc)}) | change |",
        "|---|---:|---:|---:|",
        row("Requests / min", base.rpm, inc.rpm, rpm),
        row("Total response time", base.total_ms, inc.total_ms, fmt_ms),
        row("Target response time", base.target_ms, inc.target_ms, fmt_ms),
        row("Time in proxy (total - target)", base.overhead_ms, inc.overhead_ms, fmt_ms),
        row("Request processing latency", base.request_ms, inc.request_ms, fmt_ms),
        row("Response processing latency", base.response_ms, inc.response_ms, fmt_ms),
        row("Worst minute (total)", base.peak_total_ms, inc.peak_total_ms, fmt_ms),
        row("Error rate", base.error_rate, inc.error_rate, fmt_percent),
    ]


def _change(proposal: Proposal) -> list[str]:
    lines = [f"- {_inline(reason)}" for reason in proposal.rationale]
    for change in proposal.changes:
        lines += ["", f"**{_inline(change.title)}**"]
        if change.request:
            lines.append(f"`{_code(change.request)}`")
        lines += [f"```{change.language}", change.content.replace("```", "'''"), "```"]
    return lines


def _links(problem: Problem) -> list[str]:
    fp = problem.fingerprint
    lines = [
        "- " + _url_or_text("Incident " + _inline(i.incident_id or "", 60), i.url)
        for i in problem.opened[:3]
        if i.url
    ]
    lines.append(
        f"- [Apigee proxy {_inline(fp.proxy)}](https://console.cloud.google.com/apigee/proxies/"
        f"{_path_part(fp.proxy)}/overview?project={_path_part(problem.organization or fp.project)})"
    )
    return lines


def _minute_rows(problem: Problem) -> list[str]:
    evidence = problem.evidence
    if evidence is None or not evidence.points:
        return []
    start = evidence.incident.start * 1000
    rows = []
    for p in evidence.points:
        window = "incident" if p.minute is not None and p.minute >= start else "baseline"
        errors = "n/a" if p.errors is None else f"{p.errors:,.0f}"
        requests = "n/a" if p.requests is None else f"{p.requests:,.0f}"
        rows.append(
            f"| {_time((p.minute or 0) / 1000)} | {window} | {requests} | {fmt_ms(p.total_ms)} | "
            f"{fmt_ms(p.target_ms)} | {errors} |"
        )
    return rows


_MINUTE_HEADER = "| minute | window | requests | total | target | errors |\n|---|---|---:|---:|---:|---:|"


def _cleared_line(incident: Incident) -> str:
    when = _time(incident.ended_at) if incident.ended_at else "an unknown time"
    value = f"; last value {_value_ms(incident.observed_value)}" if incident.observed_value else ""
    return f"**Cleared** at {when}: incident {_incident_link(incident)} closed{value}."


# -------------------------------------------------------------------------------------------- fitting


def _fit(head: str, rows: Sequence[str], tail: str, max_chars: int, *, header: str = _MINUTE_HEADER) -> str:
    """``head``, a table of ``rows`` and ``tail`` in at most ``max_chars``, dropping the oldest rows first."""

    def compose(kept: Sequence[str], omitted: int) -> str:
        if not kept and not omitted:
            return head + tail
        note = (
            f"\n\n_{omitted} earlier row(s) omitted to stay under {max_chars:,} characters._"
            if omitted
            else ""
        )
        table = "\n".join([header, *kept]) if kept else ""
        if header is _MINUTE_HEADER:
            table = f"\n\n<details><summary>Per-minute evidence</summary>\n\n{table}{note}\n\n</details>"
        else:
            table = f"\n{table}{note}"
        return head + table + tail

    text = compose(rows, 0)
    if len(text) <= max_chars:
        return text
    low, high = 0, len(rows)  # binary search the most rows that fit
    while low < high:
        mid = (low + high + 1) // 2
        if len(compose(rows[len(rows) - mid :], len(rows) - mid)) <= max_chars:
            low = mid
        else:
            high = mid - 1
    if low:
        return compose(rows[len(rows) - low :], len(rows) - low)
    return _truncate(head + tail, max_chars)


def _truncate(text: str, max_chars: int) -> str:
    if len(text) <= max_chars:
        return text
    note = f"\n\n_… truncated to stay under {max_chars:,} characters._"
    cut = text[: max(max_chars - len(note) - 4, 0)]
    if cut.count("```") % 2:
        cut += "\n```"
    return cut + note


# ------------------------------------------------------------------------------------------ escaping


def _inline(text: str, limit: int = _MAX_FREE_TEXT) -> str:
    """Untrusted text on one line, Markdown-escaped (``&`` too, so no entity turns into ``@`` or
    ``<``), with @-mentions, issue references and autolinkable URLs defused by a zero-width space."""
    flat = " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
    escaped = _MD_SPECIAL.sub(r"\\\1", _clip(flat, limit))
    escaped = _MENTION.sub("@" + _ZWSP, escaped)
    escaped = _REFERENCE.sub(lambda m: m.group(0) + _ZWSP, escaped)
    return _AUTOLINK.sub(_ZWSP, escaped)


def _code(text: str, limit: int = _MAX_FREE_TEXT) -> str:
    """Text for an inline code span: one line, no backticks, and no ``|`` (it would end a table cell
    even inside a code span)."""
    flat = "".join(ch if ch.isprintable() else " " for ch in text)
    return " ".join(flat.replace("`", "'").replace("|", "¦").split())[:limit]


def _cell(text: str) -> str:
    return _inline(text, 80)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _link_target(url: str | None, host: str | None = CONSOLE_HOST) -> str | None:
    """``url`` fit to be a Markdown link target, or None: ``https``, on ``host`` (None: any host),
    no user info, port or backslash, nothing unprintable; characters Markdown or HTML could read
    as syntax are percent-encoded."""
    if not url or len(url) > 2_000 or "\\" in url or any(not ch.isprintable() or ch.isspace() for ch in url):
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if (
        parts.scheme != "https"
        or parts.username is not None
        or parts.password is not None
        or port is not None
    ):
        return None
    if not parts.hostname or (host is not None and parts.hostname != host) or parts.netloc != parts.hostname:
        return None
    return quote(url, safe=_URL_SAFE)


def _url_or_text(label: str, url: str | None, limit: int = 120) -> str:
    """A link when ``url`` is the Cloud console, else ``label`` and the URL as code (inert).
    ``label`` is already escaped."""
    target = _link_target(url)
    if target is not None:
        return f"[{label}]({target})"
    if not url:
        return label
    # inert in a code span; the scheme is split too, so a copy of it is not a working link either
    shown = _SCHEME.sub(lambda m: m.group(0)[:-1] + _ZWSP + ":", _code(url, limit), count=1)
    return f"{label} (`{shown}`)"


def _path_part(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "", text)


def _url(incident: Incident | None) -> str | None:
    return incident.url if incident is not None else None


def _incident_link(incident: Incident) -> str:
    return _url_or_text(_inline(incident.incident_id or "incident", 60), incident.url)


def _ticket_ref(ticket: str) -> str:
    """The earlier ticket: the tracker's own URL (an autolink), or its id as text."""
    target = _link_target(ticket, host=None)
    return f"<{target}>" if target is not None else _inline(ticket, 200)


def _value_ms(value: str | None) -> str:
    if value is None:
        return "n/a"
    try:
        return fmt_ms(float(value))
    except ValueError:
        return _inline(value, 40)


def _time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _hour(bucket: str) -> str:
    return f"{bucket[:4]}-{bucket[4:6]}-{bucket[6:8]} {bucket[8:10]}:00 UTC"


def _minutes(stats: WindowStats) -> str:
    return f"{max(stats.end - stats.start, 0) // 60} min"
