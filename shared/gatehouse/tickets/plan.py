"""From a batch of Pub/Sub messages to one decision per fingerprint, without side effects.

The job reads the world in stages (decode, then analytics and bundles per proxy, then the ledger and
the tracker per fingerprint) and this module does the thinking between them:

1. :func:`triage` decodes each message: malformed (acknowledged and reported, never ticketed),
   ignored with a reason (the console's test notification, other metrics, missing fields, other
   event kinds), or a latency incident and its metric family;
2. :func:`evidence_windows` gives each (project, environment, proxy) one stats window covering a
   baseline that ends where its earliest condition began to breach, and the incidents themselves;
3. :func:`work_items` diagnoses, proposes and fingerprints each (proxy, family), merging whatever
   ends up with the same fingerprint, so one run yields one action per problem;
4. :func:`route_closed` sends each "closed" notification to the ticket that recorded its incident,
   and :func:`route_open` keeps re-fires on a still-open ticket, even when today's evidence
   suggests another proposal type than the ticket was opened with;
5. :func:`decide_all` applies the lifecycle rules and the hourly cap, the worst problems first.

The resulting :class:`Plan` prints as the job's ``plan`` mode output.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from gatehouse import events
from gatehouse.errors import InputError
from gatehouse.tickets.diagnosis import Thresholds, diagnose
from gatehouse.tickets.evidence import Evidence, fmt_ms
from gatehouse.tickets.fingerprint import Family, Fingerprint, alternatives, metric_family
from gatehouse.tickets.lifecycle import CREATES, Decision, Entry, Facts, decide
from gatehouse.tickets.ports import PulledMessage, TicketState
from gatehouse.tickets.proposal import PROPOSAL_TYPES, Subject, propose
from gatehouse.tickets.proxyconfig import UNKNOWN, ProxyConfig
from gatehouse.tickets.render import Problem, title
from gatehouse.tickets.settings import OWNER_LABEL, TicketSettings

_REQUIRED = ("incident_id", "state", "project", "environment", "proxy")
ORGANIZATION_PLACEHOLDER = "ORGANIZATION"  # no organization configured: the reader fills it in


@dataclass(frozen=True)
class Triaged:
    """One message after decoding: exactly one of incident, reason, malformed is set."""

    ack_id: str
    incident: events.Incident | None = None
    family: Family | None = None
    reason: str | None = None  # well-formed but not for us
    malformed: str | None = None


def triage(message: PulledMessage) -> Triaged:
    try:
        event = events.decode(message.data, attributes=message.attributes)
    except InputError as exc:
        return Triaged(message.ack_id, malformed=str(exc))
    except Exception as exc:  # a decoder bug must not make one message loop forever either
        return Triaged(message.ack_id, malformed=f"decoder failed: {type(exc).__name__}: {exc}")
    if isinstance(event, events.Ignored):
        return Triaged(message.ack_id, reason=event.reason)
    if not isinstance(event, events.Incident):
        return Triaged(message.ack_id, reason=f"not a Monitoring incident ({event.kind})")
    if event.test:
        return Triaged(message.ack_id, reason="the console's test notification")
    family, why_not = metric_family(event.metric, event.resource_type)
    if family is None:
        return Triaged(message.ack_id, reason=why_not)
    missing = [name for name in _REQUIRED if getattr(event, name) is None]
    if missing:
        return Triaged(message.ack_id, reason=f"latency incident without {', '.join(missing)}")
    return Triaged(message.ack_id, incident=event, family=family)


def in_organization(item: Triaged, settings: TicketSettings) -> Triaged:
    """An incident labelled with another Apigee organization than the configured one is not ours:
    its evidence would be read from a same-named proxy of our organization."""
    incident, ours = item.incident, settings.apigee_org
    if incident is None or not ours or incident.org is None or incident.org == ours:
        return item
    return Triaged(item.ack_id, reason=f"incident for Apigee organization {incident.org}, not {ours}")


def proxy_scope(proxy: str, labels: Mapping[str, str] | None, settings: TicketSettings) -> str | None:
    """Why incidents for ``proxy`` (with these labels; None: no such proxy) get no ticket, or None."""
    if labels is None:
        where = (
            f"Apigee organization {settings.apigee_org}" if settings.apigee_org else "the Apigee organization"
        )
        return f"proxy {proxy} does not exist in {where}"
    if not settings.include_unowned_proxies and labels.get(OWNER_LABEL) != settings.owner_id:
        return (
            f"proxy {proxy} was not created by this gatehouse installation "
            f"(no {OWNER_LABEL}={settings.owner_id} label)"
        )
    return None


# ------------------------------------------------------------------------------------------ windows


@dataclass(frozen=True, order=True)
class Source:
    project: str
    environment: str
    proxy: str

    @classmethod
    def of(cls, incident: events.Incident) -> Source:
        return cls(incident.project or "", incident.environment or "", incident.proxy or "")


@dataclass(frozen=True)
class Window:
    """Epoch seconds on whole minutes: baseline ``[baseline_start, incident_start)``, then the incident."""

    baseline_start: int
    incident_start: int
    incident_end: int


def evidence_windows(
    triaged: Sequence[Triaged], now: float, settings: TicketSettings
) -> dict[Source, Window]:
    by_source: dict[Source, list[events.Incident]] = {}
    for item in triaged:
        if item.incident is not None:
            by_source.setdefault(Source.of(item.incident), []).append(item.incident)
    return {source: _window(incidents, now, settings) for source, incidents in sorted(by_source.items())}


def _window(incidents: Sequence[events.Incident], now: float, settings: TicketSettings) -> Window:
    """The incident window starts where the condition began to breach: Monitoring opens an incident
    only after the condition held for its ``duration``, so ``started_at`` is that much later."""
    default_start = now - settings.default_window_minutes * 60
    breaches = [i.started_at - (i.duration or 0) if i.started_at else default_start for i in incidents]
    start = int(min(breaches)) // 60 * 60
    still_open = any(i.state == "open" or i.ended_at is None for i in incidents)
    end = now if still_open else max(i.ended_at or now for i in incidents)
    end_minute = min(-(-int(end) // 60) * 60, start + settings.max_incident_window_minutes * 60)
    return Window(start - settings.baseline_minutes * 60, start, max(end_minute, start + 60))


# --------------------------------------------------------------------------------------- work items


@dataclass(frozen=True)
class Enrichment:
    """What the job could read about one proxy: evidence (None: unavailable) and its configuration."""

    evidence: Evidence | None = None
    config: ProxyConfig = UNKNOWN
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class WorkItem:
    """One fingerprint's notifications of this run, with the ticket content they produce."""

    problem: Problem
    acks: Mapping[tuple[str, str], tuple[str, ...]]  # (incident id, state) -> ack ids

    @property
    def fingerprint(self) -> Fingerprint:
        return self.problem.fingerprint

    @property
    def ack_ids(self) -> tuple[str, ...]:
        return tuple(ack for ids in self.acks.values() for ack in ids)

    @property
    def facts(self) -> Facts:
        return Facts(
            opened=tuple(i.incident_id or "" for i in self.problem.opened),
            closed=tuple(i.incident_id or "" for i in self.problem.closed),
            peak_ms=self.problem.peak_ms,
        )


def work_items(
    triaged: Sequence[Triaged], enrichments: Mapping[Source, Enrichment], settings: TicketSettings
) -> list[WorkItem]:
    """Diagnose, propose and fingerprint every (proxy, family) among the incidents."""
    groups: dict[tuple[Source, Family], list[tuple[str, events.Incident]]] = {}
    for triaged_item in triaged:
        incident, family = triaged_item.incident, triaged_item.family
        if incident is not None and family is not None and Source.of(incident) in enrichments:
            groups.setdefault((Source.of(incident), family), []).append((triaged_item.ack_id, incident))
    thresholds = Thresholds.from_settings(settings)
    merged: dict[str, WorkItem] = {}
    for (source, family), members in sorted(groups.items()):
        enrichment = enrichments[source]
        item = _work_item(source, family, members, enrichment, thresholds=thresholds, settings=settings)
        key = item.fingerprint.doc_id
        merged[key] = _merge(merged[key], item) if key in merged else item
    return list(merged.values())


def _work_item(
    source: Source,
    family: Family,
    members: Sequence[tuple[str, events.Incident]],
    enrichment: Enrichment,
    *,
    thresholds: Thresholds,
    settings: TicketSettings,
) -> WorkItem:
    acks: dict[tuple[str, str], list[str]] = {}
    unique: dict[tuple[str, str], events.Incident] = {}
    for ack_id, incident in members:
        key = (incident.incident_id or "", incident.state or "")
        acks.setdefault(key, []).append(ack_id)
        unique.setdefault(key, incident)
    opened = tuple(i for (_, state), i in unique.items() if state == "open")
    closed = tuple(i for (_, state), i in unique.items() if state == "closed")
    evidence = enrichment.evidence
    diagnosis = diagnose(evidence, family, thresholds)
    subject = Subject(settings.apigee_org or ORGANIZATION_PLACEHOLDER, source.environment, source.proxy)
    proposal = propose(
        diagnosis,
        enrichment.config,
        subject=subject,
        evidence=evidence,
        failover_regions=settings.failover_regions,
    )
    fp = Fingerprint(
        source.project, source.environment, source.proxy, family, proposal.type, settings.fingerprint_fields
    )
    problem = Problem(
        fingerprint=fp,
        opened=opened,
        closed=closed,
        evidence=evidence,
        diagnosis=diagnosis,
        proposal=proposal,
        peak_ms=_peak(evidence, family, opened or closed),
        notes=enrichment.notes,
        organization=subject.organization,
    )
    return WorkItem(problem, {key: tuple(ids) for key, ids in acks.items()})


def _peak(evidence: Evidence | None, family: Family, incidents: Sequence[events.Incident]) -> float | None:
    """The evidence's worst minute, else the worst value the alerts observed."""
    if evidence is not None and evidence.peak_ms(family) is not None:
        return evidence.peak_ms(family)
    observed = []
    for incident in incidents:
        try:
            observed.append(float(incident.observed_value or ""))
        except ValueError:
            continue
    return max(observed) if observed else None


def _merge(a: WorkItem, b: WorkItem) -> WorkItem:
    """Two (proxy, family) groups that share a fingerprint (family not among the fields)."""
    peaks = [p for p in (a.problem.peak_ms, b.problem.peak_ms) if p is not None]
    problem = replace(
        a.problem,
        opened=_unique((*a.problem.opened, *b.problem.opened)),
        closed=_unique((*a.problem.closed, *b.problem.closed)),
        peak_ms=max(peaks) if peaks else None,
    )
    acks = dict(a.acks)
    for key, ids in b.acks.items():
        acks[key] = (*acks.get(key, ()), *ids)
    return WorkItem(problem, acks)


def _unique(incidents: Sequence[events.Incident]) -> tuple[events.Incident, ...]:
    seen: dict[str | None, events.Incident] = {}
    for incident in incidents:
        seen.setdefault(incident.incident_id, incident)
    return tuple(seen.values())


def ledger_fingerprints(items: Sequence[WorkItem]) -> dict[str, Fingerprint]:
    """Ledger documents to read: each item's, and its alternatives under other proposal types.

    Those hold the ticket a "closed" notification belongs to, or an open ticket a re-fire should
    stay on although today's evidence proposes a different change.
    """
    return {
        fp.doc_id: fp
        for item in items
        for fp in (item.fingerprint, *alternatives(item.fingerprint, PROPOSAL_TYPES))
    }


def route_open(
    items: Sequence[WorkItem], entries: Mapping[str, Entry], tickets: Mapping[str, TicketState | None]
) -> list[WorkItem]:
    """Keep a problem on its open ticket when the evidence now suggests another proposal type.

    The proposal is part of the fingerprint so that a new kind of change gets its own ticket once
    the old one is closed; while a ticket is still open, a flapping diagnosis (analytics arriving
    late, a borderline ratio) becomes a comment there, not a second ticket.
    """
    out: dict[str, WorkItem] = {}
    for item in items:
        home = item.fingerprint
        if item.problem.opened and home.doc_id not in entries:
            for candidate in alternatives(home, PROPOSAL_TYPES):
                entry = entries.get(candidate.doc_id)
                ticket = tickets.get(entry.ticket_id) if entry is not None and entry.ticket_id else None
                if ticket is not None and ticket.state == "open":
                    home = candidate
                    break
        moved = (
            item if home == item.fingerprint else WorkItem(replace(item.problem, fingerprint=home), item.acks)
        )
        out[home.doc_id] = _merge(out[home.doc_id], moved) if home.doc_id in out else moved
    return list(out.values())


def route_closed(
    items: Sequence[WorkItem], entries: Mapping[str, Entry]
) -> tuple[list[WorkItem], list[tuple[str, str]]]:
    """Move each "closed" notification to the fingerprint whose ledger entry recorded its incident.

    Returns the work items (some new, for tickets opened under another proposal type) and the acks
    of cleared incidents that never had a ticket, with the reason.
    """
    out: dict[str, WorkItem] = {}
    ignored: list[tuple[str, str]] = []
    for item in items:
        problem = item.problem
        opened_ids = {i.incident_id for i in problem.opened}
        stay: list[events.Incident] = []
        for incident in problem.closed:
            key = (incident.incident_id or "", "closed")
            home = _home(item.fingerprint, incident.incident_id or "", entries)
            if incident.incident_id in opened_ids or home == item.fingerprint:
                stay.append(incident)
            elif home is None:
                ignored.extend(
                    (ack, "cleared, but it never had a ticket of its own") for ack in item.acks[key]
                )
            else:
                moved = WorkItem(
                    replace(problem, fingerprint=home, opened=(), closed=(incident,), peak_ms=None),
                    {key: item.acks[key]},
                )
                out[home.doc_id] = _merge(out[home.doc_id], moved) if home.doc_id in out else moved
        kept_acks = {
            k: v for k, v in item.acks.items() if k[1] == "open" or any(i.incident_id == k[0] for i in stay)
        }
        if problem.opened or stay:
            kept = WorkItem(replace(problem, closed=tuple(stay)), kept_acks)
            doc_id = item.fingerprint.doc_id
            out[doc_id] = _merge(kept, out[doc_id]) if doc_id in out else kept
    return list(out.values()), ignored


def _home(fp: Fingerprint, incident_id: str, entries: Mapping[str, Entry]) -> Fingerprint | None:
    for candidate in (fp, *alternatives(fp, PROPOSAL_TYPES)):
        entry = entries.get(candidate.doc_id)
        if entry is not None and incident_id in entry.incidents:
            return candidate
    return None


# ---------------------------------------------------------------------------------------- decisions


@dataclass(frozen=True)
class Step:
    item: WorkItem
    decision: Decision
    entry: Entry | None
    ticket: TicketState | None


@dataclass(frozen=True)
class Plan:
    run_id: str
    now: float
    bucket: str
    steps: tuple[Step, ...]
    ignored: tuple[tuple[str, str], ...] = ()  # (ack id, reason)
    malformed: tuple[tuple[str, str], ...] = ()  # (ack id, error)
    deferred: tuple[tuple[str, str], ...] = ()  # (ack id, reason): left for the next run

    def render(self, settings: TicketSettings) -> str:
        """The human-readable plan (``plan`` mode output)."""
        when = datetime.fromtimestamp(self.now, UTC).strftime("%Y-%m-%d %H:%M UTC")
        acks = sum(len(s.item.ack_ids) for s in self.steps)
        messages = acks + len(self.ignored) + len(self.malformed) + len(self.deferred)
        lines = [
            f"gatehouse tickets plan, run {self.run_id} at {when}: {messages} message(s), "
            f"{len(self.steps)} fingerprint(s)"
        ]
        for step in self.steps:
            fp = step.item.fingerprint
            lines.append(
                f"  {step.decision.action:<18} {fp.label}  {fp.key}  peak {fmt_ms(step.item.problem.peak_ms)}"
            )
            lines.append(f"  {'':<18} {step.decision.reason}")
            if step.decision.action in CREATES:
                lines.append(f"  {'':<18} title: {title(step.item.problem, settings.max_title_chars)}")
        for label, pairs in (
            ("ignore", self.ignored),
            ("malformed", self.malformed),
            ("defer", self.deferred),
        ):
            counts: dict[str, int] = {}
            for _, reason in pairs:
                counts[reason] = counts.get(reason, 0) + 1
            lines += [f"  {label:<18} {n} x {reason}" for reason, n in sorted(counts.items())]
        return "\n".join(lines)


def decide_all(
    items: Sequence[WorkItem],
    *,
    entries: Mapping[str, Entry],
    tickets: Mapping[str, TicketState | None],
    digest_listed: frozenset[str],
    bucket_count: int,
    now: float,
    settings: TicketSettings,
    run_id: str,
) -> tuple[Step, ...]:
    """One decision per item; creations beyond the hour's remaining budget overflow, worst kept."""

    def one(item: WorkItem, can_create: bool) -> Step:
        entry = entries.get(item.fingerprint.doc_id)
        ticket = tickets.get(entry.ticket_id) if entry is not None and entry.ticket_id else None
        decision = decide(
            item.facts,
            entry,
            ticket,
            now=now,
            settings=settings,
            run_id=run_id,
            can_create=can_create,
            in_digest=item.fingerprint.label in digest_listed,
        )
        return Step(item, decision, entry, ticket)

    ordered = sorted(items, key=lambda i: (-(i.problem.peak_ms or 0.0), i.fingerprint.key))
    budget = max(settings.max_new_tickets_per_hour - bucket_count, 0)
    steps = []
    for item in ordered:
        step = one(item, can_create=True)
        entry = step.entry
        holds_slot = entry is not None and entry.state == "claimed" and entry.ticket_id is None
        if step.decision.action in CREATES and not holds_slot:  # a resumed claim took its slot before
            if budget:
                budget -= 1
            else:
                step = one(item, can_create=False)
        steps.append(step)
    return tuple(steps)
