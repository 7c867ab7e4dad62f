"""One run of the tickets job: drain the subscription, plan, apply, acknowledge what is durable.

The run drains up to ``max_messages`` first and plans them as one batch, because a problem's
notifications must become one action (and at most one comment per ticket) per run, and a message
may only be acknowledged after that action's ledger write and tracker call are done. The
subscription's ack deadline should therefore be long (600 s); a message redelivered meanwhile is
recognised by the ledger and ignored.

Tickets are only for what this installation looks after: an incident labelled with another Apigee
organization, or for a proxy the organization does not have, or for one without this
installation's owner label (unless ``include_unowned_proxies``), is acknowledged with the reason
and nothing is read for it; its evidence would come from a same-named proxy of our organization.

Reads are kept to what Apigee allows: one stats call per (project, environment, proxy) covering
baseline and incident windows, throttled to ``stats_calls_per_minute`` (the analytics API allows
about 100 a minute per organization), and one bundle read per (environment, proxy). When analytics
or the bundle fail transiently, or analytics has no data for the incident window yet (it lags by
minutes), the proxy's messages wait for the next run until the incident is
``evidence_wait_seconds`` old; after that the ticket goes out with what is known.

``plan=True`` does every read and prints the plan, but writes nothing and acknowledges nothing.
The exit code is non-zero only when something was left unacknowledged for the next run (or could
not be read or acknowledged at all); malformed and ignored messages are acknowledged and reported.
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from gatehouse.errors import InputError, NotFoundError, TransientError
from gatehouse.logging import event, get_logger
from gatehouse.tickets.evidence import SELECT, Evidence, build_evidence, parse_stats
from gatehouse.tickets.executor import Executor, Outcome
from gatehouse.tickets.fingerprint import alternatives, bucket_key, digest_key, hour_bucket
from gatehouse.tickets.lifecycle import Entry
from gatehouse.tickets.plan import (
    Enrichment,
    Plan,
    Source,
    Triaged,
    Window,
    WorkItem,
    decide_all,
    evidence_windows,
    in_organization,
    ledger_fingerprints,
    proxy_scope,
    route_closed,
    route_open,
    triage,
    work_items,
)
from gatehouse.tickets.ports import PulledMessage, TicketPorts, TicketState
from gatehouse.tickets.proposal import PROPOSAL_TYPES
from gatehouse.tickets.proxyconfig import UNKNOWN, ProxyConfig, parse_bundle
from gatehouse.tickets.settings import TicketSettings

_log = get_logger("tickets")
ACK_CHUNK = 1_000  # Pub/Sub accepts at most 2,500 ack ids per request


@dataclass
class RunReport:
    """What one run saw and did; ``exit_code`` is what the job process returns."""

    run_id: str
    mode: Literal["plan", "apply"]
    pulled: int = 0
    drained: bool = False
    malformed: list[tuple[str, str]] = field(default_factory=list)  # (ack id, error)
    ignored: dict[str, int] = field(default_factory=dict)  # reason -> messages
    outcomes: list[Outcome] = field(default_factory=list)
    deferred: list[tuple[str, str]] = field(default_factory=list)  # (ack id, reason)
    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # done, but not as asked (e.g. labels dropped)
    acked: int = 0
    left: int = 0
    stats_calls: int = 0
    bundle_reads: int = 0
    plan_text: str = ""

    @property
    def exit_code(self) -> int:
        return 1 if self.left or self.failures else 0

    def actions(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for outcome in self.outcomes:
            counts[outcome.action] = counts.get(outcome.action, 0) + 1
        return counts

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "mode": self.mode,
            "pulled": self.pulled,
            "drained": self.drained,
            "acked": self.acked,
            "left": self.left,
            "stats_calls": self.stats_calls,
            "bundle_reads": self.bundle_reads,
            "actions": self.actions(),
            "ignored": dict(self.ignored),
            "malformed": [{"ack_id": ack, "error": error} for ack, error in self.malformed],
            "deferred": [{"ack_id": ack, "reason": reason} for ack, reason in self.deferred],
            "fingerprints": [
                {
                    "label": o.label,
                    "key": o.key,
                    "action": o.action,
                    "reason": o.reason,
                    "ticket_url": o.ticket_url,
                    "messages": len(o.acked) + len(o.left),
                    "error": o.error,
                }
                for o in self.outcomes
            ],
            "failures": list(self.failures),
            "warnings": list(self.warnings),
            "exit_code": self.exit_code,
        }


def run(
    ports: TicketPorts,
    settings: TicketSettings,
    *,
    plan: bool = False,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
    run_id: str | None = None,
) -> RunReport:
    """Drain, plan and (unless ``plan``) apply one batch of incident notifications."""
    report = RunReport(run_id or uuid.uuid4().hex[:12], "plan" if plan else "apply")
    messages = _drain(ports, settings, report)
    report.pulled = len(messages)
    now = clock()
    bucket = hour_bucket(now)

    triaged = [in_organization(triage(message), settings) for message in messages]
    report.malformed = [(t.ack_id, t.malformed) for t in triaged if t.malformed is not None]
    ignored = [(t.ack_id, t.reason) for t in triaged if t.reason is not None]

    reader = _Reader(ports, settings, clock, sleep, report)
    enrichments = reader.enrich(triaged, evidence_windows(triaged, now, settings), now)
    ignored += reader.ignored
    items = work_items(triaged, enrichments, settings)
    try:
        entries = reader.entries(items)
        ready, tickets = reader.readable(items, entries, reader.tickets(entries))
        ready, cleared = route_closed(ready, entries)
        ready = route_open(ready, entries, tickets)
        steps = decide_all(
            ready,
            entries=entries,
            tickets=tickets,
            digest_listed=reader.digest_labels(bucket),
            bucket_count=reader.bucket_count(bucket),
            now=now,
            settings=settings,
            run_id=report.run_id,
        )
    except Exception as exc:  # e.g. the ledger is unreachable: nothing can be decided, all of it waits
        report.failures.append(f"could not read the ledger: {type(exc).__name__}: {exc}")
        reader.defer_all(items, f"ledger unavailable: {exc}")
        cleared, steps = [], ()
    ignored += cleared
    for _, reason in ignored:
        report.ignored[reason] = report.ignored.get(reason, 0) + 1
    report.deferred = reader.deferred
    result = Plan(
        report.run_id, now, bucket, steps, tuple(ignored), tuple(report.malformed), tuple(reader.deferred)
    )
    report.plan_text = result.render(settings)
    if plan:
        report.outcomes = [_planned(step.item, step.decision.action, step.decision.reason) for step in steps]
        _release(ports, [m.ack_id for m in messages], report)
        return report

    executor = Executor(ports.ledger, ports.tracker, settings, report.run_id, now, bucket)
    report.outcomes = executor.apply(steps)
    report.warnings += executor.warnings
    to_ack = [ack for ack, _ in report.malformed] + [ack for ack, _ in ignored]
    to_ack += [ack for outcome in report.outcomes for ack in outcome.acked]
    report.left = len(reader.deferred) + sum(len(o.left) for o in report.outcomes)
    report.failures += [f"{o.label}: {o.error}" for o in report.outcomes if o.error]
    _ack(ports, to_ack, report)
    acked = set(to_ack)
    _release(ports, [m.ack_id for m in messages if m.ack_id not in acked], report)
    event(_log, "tickets: run done", **{k: v for k, v in report.to_dict().items() if k != "fingerprints"})
    return report


def _drain(ports: TicketPorts, settings: TicketSettings, report: RunReport) -> list[PulledMessage]:
    messages: list[PulledMessage] = []
    while len(messages) < settings.max_messages:
        try:
            batch = ports.messages.pull(min(settings.pull_batch, settings.max_messages - len(messages)))
        except Exception as exc:
            if not messages:
                raise
            report.failures.append(f"pull stopped early: {type(exc).__name__}: {exc}")
            return messages
        if not batch:
            report.drained = True
            break
        messages.extend(batch)
    return messages


def _ack(ports: TicketPorts, ack_ids: Sequence[str], report: RunReport) -> None:
    unique = list(dict.fromkeys(ack_ids))
    for start in range(0, len(unique), ACK_CHUNK):
        chunk = unique[start : start + ACK_CHUNK]
        try:
            ports.messages.ack(chunk)
        except Exception as exc:  # redelivered later and recognised by the ledger
            report.failures.append(f"ack of {len(chunk)} message(s) failed: {type(exc).__name__}: {exc}")
            report.left += len(chunk)
            continue
        report.acked += len(chunk)


def _release(ports: TicketPorts, ack_ids: Sequence[str], report: RunReport) -> None:
    """What this run does not acknowledge goes back to the subscription now, for the next run."""
    unique = list(dict.fromkeys(ack_ids))
    for start in range(0, len(unique), ACK_CHUNK):
        try:
            ports.messages.release(unique[start : start + ACK_CHUNK])
        except Exception as exc:  # they come back anyway when the ack deadline expires
            report.failures.append(f"release failed: {type(exc).__name__}: {exc}")


def _planned(item: WorkItem, action: str, reason: str) -> Outcome:
    fp = item.fingerprint
    return Outcome(fp.label, fp.key, action, reason, left=item.ack_ids)


class _Reader:
    """The run's reads, each done once, throttled and counted; failures defer only what they touch."""

    def __init__(
        self,
        ports: TicketPorts,
        settings: TicketSettings,
        clock: Callable[[], float],
        sleep: Callable[[float], None],
        report: RunReport,
    ) -> None:
        self.ports, self.settings, self.clock, self.sleep, self.report = ports, settings, clock, sleep, report
        self.deferred: list[tuple[str, str]] = []
        self.ignored: list[tuple[str, str]] = []  # (ack id, reason): not a proxy gatehouse looks after
        self._scopes: dict[str, str | Exception | None] = {}
        self._stats_times: deque[float] = deque()
        self._bundles: dict[tuple[str, str], tuple[ProxyConfig, str | None] | Exception] = {}

    def enrich(
        self, triaged: Sequence[Triaged], windows: Mapping[Source, Window], now: float
    ) -> dict[Source, Enrichment]:
        by_source: dict[Source, list[Triaged]] = {}
        for t in triaged:
            if t.incident is not None:
                by_source.setdefault(Source.of(t.incident), []).append(t)
        out: dict[Source, Enrichment] = {}
        for source, window in windows.items():
            incidents = by_source.get(source, [])
            scope = self._scope(source.proxy)
            if isinstance(scope, Exception):  # ownership decides whether there is a ticket at all
                self._defer([t.ack_id for t in incidents], f"proxy ownership unknown, retrying: {scope}")
                continue
            if scope is not None:
                self.ignored += [(t.ack_id, scope) for t in incidents]
                continue
            starts = [t.incident.started_at for t in incidents if t.incident and t.incident.started_at]
            young = bool(starts) and now - min(starts) < self.settings.evidence_wait_seconds
            notes: list[str] = []
            evidence, error = self._evidence(source, window)
            if error is not None:
                if young and isinstance(error, TransientError):
                    self._defer([t.ack_id for t in incidents], f"analytics unavailable, retrying: {error}")
                    continue
                notes.append(f"Analytics unavailable: {error}")
            elif young and evidence is not None and not evidence.has_data:
                # analytics lags by minutes: a diagnosis (and with it the fingerprint) made without
                # the incident's own minutes would likely change on the next run
                self._defer(
                    [t.ack_id for t in incidents], "analytics has no data for the incident window yet"
                )
                continue
            config, note, error = self._config(source)
            if error is not None:
                if young and isinstance(error, TransientError):
                    self._defer([t.ack_id for t in incidents], f"bundle unavailable, retrying: {error}")
                    continue
                note = f"Deployed bundle unavailable: {error}"
            if note:
                notes.append(note)
            out[source] = Enrichment(evidence, config, tuple(notes))
        return out

    def _scope(self, proxy: str) -> str | Exception | None:
        """Why ``proxy`` is not gatehouse's to ticket (None: it is), or the error reading its labels."""
        if proxy not in self._scopes:
            try:
                labels = self.ports.bundles.proxy_labels(proxy)
            except Exception as exc:
                self._scopes[proxy] = exc
            else:
                self._scopes[proxy] = proxy_scope(proxy, labels, self.settings)
        return self._scopes[proxy]

    def _evidence(self, source: Source, window: Window) -> tuple[Evidence | None, Exception | None]:
        self._throttle()
        self.report.stats_calls += 1
        try:
            raw = self.ports.stats.stats(
                source.environment,
                source.proxy,
                select=SELECT,
                start=window.baseline_start,
                end=window.incident_end,
                time_unit="minute",
            )
        except Exception as exc:  # evidence is an enrichment: any failure degrades, none crashes the run
            return None, exc
        parsed = parse_stats(raw, source.proxy)
        evidence = build_evidence(
            parsed,
            baseline_start=window.baseline_start,
            incident_start=window.incident_start,
            incident_end=window.incident_end,
        )
        return evidence, None

    def _config(self, source: Source) -> tuple[ProxyConfig, str | None, Exception | None]:
        key = (source.environment, source.proxy)
        if key not in self._bundles:
            self.report.bundle_reads += 1
            try:
                raw = self.ports.bundles.deployed_bundle(source.environment, source.proxy)
                if raw is None:
                    self._bundles[key] = (
                        UNKNOWN,
                        f"No revision of {source.proxy} is deployed in {source.environment}.",
                    )
                else:
                    self._bundles[key] = (parse_bundle(raw), None)
            except InputError as exc:
                self._bundles[key] = (UNKNOWN, f"Deployed bundle unreadable: {exc}")
            except Exception as exc:
                self._bundles[key] = exc
        cached = self._bundles[key]
        if isinstance(cached, Exception):
            return UNKNOWN, None, cached
        return cached[0], cached[1], None

    def _throttle(self) -> None:
        """At most ``stats_calls_per_minute`` analytics calls in any 60 s (sleeps when needed)."""
        now = self.clock()
        while self._stats_times and now - self._stats_times[0] >= 60:
            self._stats_times.popleft()
        if len(self._stats_times) >= self.settings.stats_calls_per_minute:
            self.sleep(60 - (now - self._stats_times[0]))
            now = self.clock()
            while self._stats_times and now - self._stats_times[0] >= 60:
                self._stats_times.popleft()
        self._stats_times.append(now)

    def entries(self, items: Sequence[WorkItem]) -> dict[str, Entry]:
        out: dict[str, Entry] = {}
        for doc_id in ledger_fingerprints(items):
            record = self.ports.ledger.get(doc_id)
            if record is not None:
                out[doc_id] = Entry.from_record(doc_id, record)
        return out

    def tickets(self, entries: Mapping[str, Entry]) -> dict[str, TicketState | Exception | None]:
        """Each entry's ticket as the tracker sees it: None when deleted, the error when unreadable."""
        states: dict[str, TicketState | Exception | None] = {}
        for entry in entries.values():
            if entry.ticket_id and entry.ticket_id not in states:
                try:
                    states[entry.ticket_id] = self.ports.tracker.get(entry.ticket_id)
                except NotFoundError:
                    states[entry.ticket_id] = None
                except Exception as exc:  # only the fingerprints that need this ticket wait
                    states[entry.ticket_id] = exc
        return states

    def readable(
        self,
        items: Sequence[WorkItem],
        entries: Mapping[str, Entry],
        tickets: Mapping[str, TicketState | Exception | None],
    ) -> tuple[list[WorkItem], dict[str, TicketState | None]]:
        """Items whose tickets could all be read (the others are deferred), and the tickets read."""
        kept = []
        for item in items:
            fps = (item.fingerprint, *alternatives(item.fingerprint, PROPOSAL_TYPES))
            ids = {entries[fp.doc_id].ticket_id for fp in fps if fp.doc_id in entries}
            errors = [tickets[i] for i in ids if i and isinstance(tickets.get(i), Exception)]
            if errors:
                self._defer(item.ack_ids, f"tracker unavailable: {errors[0]}")
            else:
                kept.append(item)
        read = {i: state for i, state in tickets.items() if not isinstance(state, Exception)}
        return kept, read

    def digest_labels(self, bucket: str) -> frozenset[str]:
        record = self.ports.ledger.get(digest_key(bucket))
        items = record.doc.get("items", []) if record else []
        return frozenset(
            d["label"] for d in items if isinstance(d, Mapping) and isinstance(d.get("label"), str)
        )

    def bucket_count(self, bucket: str) -> int:
        record = self.ports.ledger.get(bucket_key(bucket))
        count = record.doc.get("count") if record else 0
        return count if isinstance(count, int) else 0

    def defer_all(self, items: Sequence[WorkItem], reason: str) -> None:
        done = {ack for ack, _ in self.deferred}
        for item in items:
            self._defer([ack for ack in item.ack_ids if ack not in done], reason)

    def _defer(self, ack_ids: Sequence[str], reason: str) -> None:
        self.deferred.extend((ack, reason[:300]) for ack in ack_ids)
