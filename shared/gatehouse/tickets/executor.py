"""Apply a tickets plan so that every ticket is created exactly once, crashes and races included.

The ledger is written before the tracker, always with a guard:

* create: claim the fingerprint (create-if-absent, or a version-guarded update of a ticketless
  entry), take a slot of the hour's cap, create the ticket labelled with the fingerprint, record its
  id. A run that finds a claim without a ticket id (its owner crashed or failed) first looks the
  ticket up by label, so a ticket created just before a crash is adopted, not duplicated. A claim
  held by a live run is left alone (the messages stay unacked for the next run).
* comment: record the incidents and the comment body as ``pending_comment`` (guarded), post, clear.
  Two runs never both post the same update; if the tracker call fails, a later run posts the
  recorded body (a crash between posting and clearing can repeat one comment, never lose one).
* overflow: fingerprints over the hour's cap go into one digest ticket per hour, created and
  updated by the same claim/outbox rules. Every run also finishes what an earlier run left of this
  and the last hour's digest (its ticket, a pending comment), since the re-deliveries of listed
  problems are acknowledged. A claim whose ticket could not be created keeps its slot of the cap
  and is resumed by the next run whatever the cap says, so the count is of real tickets.

Each step reports the Pub/Sub ack ids whose effects are now durable; the job acknowledges only
those. One failing fingerprint never stops the others.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gatehouse.errors import GatehouseError
from gatehouse.logging import event, get_logger
from gatehouse.tickets import render
from gatehouse.tickets.fingerprint import digest_key, digest_label, hour_bucket
from gatehouse.tickets.lifecycle import Entry, remember
from gatehouse.tickets.plan import Step, WorkItem
from gatehouse.tickets.ports import Ledger, Record, StaleWriteError, TicketRef, Tracker
from gatehouse.tickets.settings import TicketSettings

_log = get_logger("tickets")
MAX_DIGEST_ITEMS = 1_000  # keeps the digest document far below Firestore's 1 MiB


@dataclass(frozen=True)
class Outcome:
    """What happened to one fingerprint (or to the digest) in this run."""

    label: str
    key: str
    action: str
    reason: str
    ticket_url: str | None = None
    acked: tuple[str, ...] = ()  # effects durable: acknowledge
    left: tuple[str, ...] = ()  # not done: leave for the next run
    error: str | None = None


class _CapReachedError(Exception):
    """The hour's cap was reached between planning and claiming: list the item in the digest."""


@dataclass
class Executor:
    ledger: Ledger
    tracker: Tracker
    settings: TicketSettings
    run_id: str
    now: float
    bucket: str
    warnings: list[str] = field(default_factory=list)  # for the run report: done, but not as asked

    def apply(self, steps: Sequence[Step]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        overflow: list[WorkItem] = []
        for step in steps:
            item = step.item
            try:
                if step.decision.action == "overflow-to-digest":
                    overflow.append(item)
                    continue
                outcomes.append(self._apply(step))
            except _CapReachedError:
                overflow.append(item)
            except Exception as exc:  # one fingerprint's failure must not stop the others
                outcomes.append(self._failed(step, exc))
        if overflow:
            outcomes.extend(self._digest(overflow))
        outcomes.extend(self._settle_digests(done={self.bucket} if overflow else set()))
        for outcome in outcomes:
            event(
                _log,
                f"tickets: {outcome.action} {outcome.label}",
                run_id=self.run_id,
                fingerprint=outcome.key,
                action=outcome.action,
                reason=outcome.reason,
                ticket_url=outcome.ticket_url,
                acked_count=len(outcome.acked),
                left_count=len(outcome.left),
                error=outcome.error,
            )
        return outcomes

    # ----------------------------------------------------------------------------------- one step

    def _apply(self, step: Step) -> Outcome:
        action = step.decision.action
        if action == "ignore":
            return self._outcome(step, acked=True)
        if action == "defer":
            return self._outcome(step, acked=False)
        if action == "suppressed":
            return self._suppress(step)
        if action in ("comment", "comment-cleared"):
            return self._comment(step)
        return self._create(step)

    def _create(self, step: Step) -> Outcome:
        item, entry, fp = step.item, step.entry, step.item.fingerprint
        problem = item.problem
        claim = {"state": "claimed", "claimed_by": self.run_id, "claimed_at": self.now}
        if entry is None:
            doc = {
                "kind": "fingerprint",
                "key": fp.key,
                "fields": {
                    "project": fp.project,
                    "environment": fp.environment,
                    "proxy": fp.proxy,
                    "family": fp.family,
                    "proposal": fp.proposal,
                },
                "label": fp.label,
                **claim,
                "ticket_id": None,
                "ticket_url": None,
                "previous_ticket_ids": [],
                "proposal": fp.proposal,
                "incidents": [],
                "cleared": [],
                "comments_count": 0,
                "pending_comment": None,
            }
            if not self.ledger.create_if_absent(fp.doc_id, doc):
                return self._lost_race(step)
            version = _version(self.ledger.get(fp.doc_id))
            resumed, exclude = False, frozenset[str]()
        else:
            previous = [*entry.previous_ticket_ids, *([entry.ticket_id] if entry.ticket_id else [])]
            changes = {**claim, "ticket_id": None, "ticket_url": None, "previous_ticket_ids": previous}
            version = self.ledger.update(fp.doc_id, changes, entry.version)
            resumed, exclude = entry.state == "claimed", frozenset(previous)

        # a resumed claim already took its slot when it was first made
        if not resumed and not self.ledger.increment_hour_bucket(
            self.bucket, self.settings.max_new_tickets_per_hour
        ):
            changes = {
                "state": "digest",
                "digest_bucket": self.bucket,
                "claimed_by": None,
                "claimed_at": None,
            }
            self.ledger.update(fp.doc_id, changes, version)
            raise _CapReachedError

        def create() -> TicketRef:
            previous_url = step.ticket.url if step.ticket else (entry.ticket_url if entry else None)
            link = previous_url if step.decision.link_to else None
            body = render.issue_body(
                problem,
                max_chars=self.settings.max_body_chars,
                previous=link,
                previous_reason=step.decision.reason,
            )
            title = render.title(problem, self.settings.max_title_chars)
            return self.tracker.create_issue(title, body, [*self.settings.labels, fp.label])

        ref = self._ticket(fp.doc_id, version, fp.label, exclude=exclude if resumed else None, create=create)
        self.ledger.update(
            fp.doc_id,
            {
                "state": "open",
                "ticket_id": ref.id,
                "ticket_url": ref.url,
                "claimed_by": None,
                "claimed_at": None,
                "opened_at": self.now,
                "last_fired_at": self.now,
                "peak_ms": problem.peak_ms,
                "suppressed_peak_ms": None,
                "proposal": fp.proposal,
                "incidents": remember([], item.facts.opened),
                "cleared": remember([], item.facts.closed),
                "comments_count": 0,
                "pending_comment": None,
                "digest_bucket": None,
            },
            version,
        )
        return self._outcome(step, acked=True, url=ref.url)

    def _ticket(
        self,
        key: str,
        version: str,
        label: str,
        exclude: frozenset[str] | None,
        create: Callable[[], TicketRef],
    ) -> TicketRef:
        """The claimed ticket: adopted by label when resuming (``exclude``: older tickets), else created."""
        if exclude is not None:
            for ref in self.tracker.find_by_label(label):
                if ref.id not in exclude:
                    return ref
        try:
            ref = create()
        except Exception:
            self._release(key, version, {"claimed_by": None})
            raise
        if ref.missing_labels:
            self.warnings.append(
                f"ticket {ref.id} ({ref.url}) was created without the label(s) "
                f"{', '.join(ref.missing_labels)}: the tracker dropped them (GitHub does so silently when "
                "the token lacks push access), so a run cannot find this ticket by its label after a "
                "crash; give the token push (write) access to the repository"
            )
            event(_log, "tickets: labels dropped", level=30, run_id=self.run_id, warning=self.warnings[-1])
        return ref

    def _lost_race(self, step: Step) -> Outcome:
        """Another run claimed first: done if it already recorded these incidents, else retry later."""
        fp = step.item.fingerprint
        record = self.ledger.get(fp.doc_id)
        entry = Entry.from_record(fp.doc_id, record) if record else None
        if entry is not None and entry.ticket_id and set(step.item.facts.opened) <= set(entry.incidents):
            return Outcome(
                fp.label, fp.key, "ignore", "another run ticketed it", entry.ticket_url, step.item.ack_ids
            )
        return Outcome(
            fp.label, fp.key, "defer", "another run is creating this ticket", left=step.item.ack_ids
        )

    def _comment(self, step: Step) -> Outcome:
        item, entry = step.item, step.entry
        if entry is None or entry.ticket_id is None:
            raise StaleWriteError("comment planned for a fingerprint without a ticket")
        problem = item.problem
        new_opened = [i for i in problem.opened if i.incident_id not in entry.incidents]
        new_closed = [i for i in problem.closed if i.incident_id not in entry.cleared]
        limit = self.settings.max_body_chars
        body = ""
        if new_opened or new_closed:
            body = render.update_comment(
                problem,
                new_opened=new_opened,
                new_closed=new_closed,
                ticket_proposal=entry.proposal,
                reason=step.decision.reason,
                max_chars=limit,
            )
        if entry.pending_comment is not None:
            earlier = entry.pending_comment.body
            body = render.pending_merge(body, earlier, limit) if body else earlier
        changes: dict[str, Any] = {
            "state": "open",
            "incidents": remember(entry.incidents, [i.incident_id or "" for i in new_opened]),
            "cleared": remember(entry.cleared, [i.incident_id or "" for i in new_closed]),
        }
        if new_opened:
            peaks = [p for p in (entry.peak_ms, problem.peak_ms) if p is not None]
            changes.update(last_fired_at=self.now, peak_ms=max(peaks) if peaks else None)
        key = item.fingerprint.doc_id
        self._post(
            key, entry.version, entry.ticket_id, body=body, changes=changes, comments=entry.comments_count
        )
        return self._outcome(step, acked=True, url=entry.ticket_url)

    def _post(
        self, key: str, version: str, ticket_id: str, *, body: str, changes: Mapping[str, Any], comments: int
    ) -> None:
        """Outbox: record ``changes`` with the body as pending, post it, then clear it."""
        pending = {"body": body, "by": self.run_id, "at": self.now}
        version = self.ledger.update(key, {**changes, "pending_comment": pending}, version)
        try:
            self.tracker.comment(ticket_id, body)
        except Exception:
            self._release(key, version, {"pending_comment": {**pending, "by": None}})
            raise
        self.ledger.update(key, {"pending_comment": None, "comments_count": comments + 1}, version)

    def _suppress(self, step: Step) -> Outcome:
        entry, facts = step.entry, step.item.facts
        if entry is None:
            raise StaleWriteError("suppression planned for a fingerprint without a ledger entry")
        changes: dict[str, Any] = {
            "state": "suppressed",
            "suppressed_peak_ms": step.decision.suppressed_peak_ms,
            "incidents": remember(entry.incidents, facts.opened),
            "cleared": remember(entry.cleared, facts.closed),
            "pending_comment": None,
        }
        if set(facts.opened) - set(entry.incidents):
            changes["last_fired_at"] = self.now
        self.ledger.update(step.item.fingerprint.doc_id, changes, entry.version)
        return self._outcome(step, acked=True, url=entry.ticket_url)

    # ------------------------------------------------------------------------------------- digest

    def _digest(self, items: Sequence[WorkItem]) -> list[Outcome]:
        key, label = digest_key(self.bucket), digest_label(self.bucket)
        listed = [render.DigestItem.of(item.problem) for item in items]
        try:
            url = self._digest_write(key, label, listed)
        except Exception as exc:
            return [
                Outcome(
                    i.fingerprint.label,
                    i.fingerprint.key,
                    "overflow-to-digest",
                    "digest not written",
                    left=i.ack_ids,
                    error=_describe(exc),
                )
                for i in items
            ]
        if url is None:
            return [
                Outcome(
                    i.fingerprint.label,
                    i.fingerprint.key,
                    "defer",
                    "another run is creating the digest",
                    left=i.ack_ids,
                )
                for i in items
            ]
        cap = self.settings.max_new_tickets_per_hour
        return [
            Outcome(
                i.fingerprint.label,
                i.fingerprint.key,
                "overflow-to-digest",
                f"over the cap of {cap} new tickets this hour; listed in the digest",
                url,
                i.ack_ids,
            )
            for i in items
        ]

    def _settle_digests(self, done: set[str]) -> list[Outcome]:
        """Finish what an earlier run left of this hour's or the last hour's digest: the ticket it
        could not create, the comment it could not post. Their problems' re-deliveries are
        acknowledged as already listed, so this must happen even when nothing overflows now."""
        outcomes: list[Outcome] = []
        for bucket in dict.fromkeys((self.bucket, hour_bucket(self.now - 3600))):
            if bucket in done:
                continue
            key, label = digest_key(bucket), digest_label(bucket)
            try:
                record = self.ledger.get(key)
                if record is None or not self._unfinished(record.doc):
                    continue
                url = self._digest_write(key, label, [], bucket=bucket)
            except Exception as exc:
                outcomes.append(
                    Outcome(
                        label, key, "digest-settle", "finishing an earlier run's digest", error=_describe(exc)
                    )
                )
                continue
            if url is not None:
                outcomes.append(Outcome(label, key, "digest-settle", "finished an earlier run's digest", url))
        return outcomes

    def _unfinished(self, doc: Mapping[str, Any]) -> bool:
        """A digest without its ticket, or with an unposted comment, that no live run is working on."""
        if not doc.get("ticket_id"):
            holder, since = doc.get("claimed_by"), doc.get("claimed_at")
        else:
            pending = doc.get("pending_comment")
            if not isinstance(pending, Mapping):
                return False
            holder, since = pending.get("by"), pending.get("at")
        fresh = isinstance(since, int | float) and self.now - since < self.settings.claim_timeout_seconds
        return holder in (None, self.run_id) or not fresh

    def _digest_write(
        self, key: str, label: str, new: Sequence[render.DigestItem], *, bucket: str | None = None
    ) -> str | None:
        """List ``new`` in the hour's digest ticket; its URL, or None while another run creates it."""
        bucket = bucket or self.bucket
        limit, cap = self.settings.max_body_chars, self.settings.max_new_tickets_per_hour
        claim = {"state": "claimed", "claimed_by": self.run_id, "claimed_at": self.now}
        record = self.ledger.get(key)
        exclude: frozenset[str] | None = None
        if record is None:
            items, omitted = _capped([], 0, new)
            new_doc = {
                "kind": "digest",
                "label": label,
                "bucket": bucket,
                **claim,
                "ticket_id": None,
                "ticket_url": None,
                "pending_comment": None,
                "items": [i.as_doc() for i in items],
                "omitted": omitted,
            }
            if not self.ledger.create_if_absent(key, new_doc):
                return None  # another run is creating it; our items go in on the next run
            version = _version(self.ledger.get(key))
        else:
            doc = record.doc
            existing = [render.DigestItem.from_doc(d) for d in doc.get("items", []) if isinstance(d, Mapping)]
            omitted = int(doc.get("omitted") or 0)
            if doc.get("ticket_id"):
                return self._digest_append(key, record, existing, omitted, new)
            holder, since = doc.get("claimed_by"), doc.get("claimed_at")
            fresh = isinstance(since, int | float) and self.now - since < self.settings.claim_timeout_seconds
            if holder not in (None, self.run_id) and fresh:
                return None
            items, omitted = _capped(existing, omitted, new)
            changes = {**claim, "items": [i.as_doc() for i in items], "omitted": omitted}
            version = self.ledger.update(key, changes, record.version)
            exclude = frozenset()

        def create() -> TicketRef:
            body = render.digest_body(items, bucket=bucket, cap=cap, omitted=omitted, max_chars=limit)
            return self.tracker.create_issue(
                render.digest_title(bucket), body, [*self.settings.labels, label]
            )

        ref = self._ticket(key, version, label, exclude=exclude, create=create)
        self.ledger.update(
            key, {"state": "open", "ticket_id": ref.id, "ticket_url": ref.url, "claimed_by": None}, version
        )
        return ref.url

    def _digest_append(
        self,
        key: str,
        record: Record,
        existing: Sequence[render.DigestItem],
        omitted: int,
        new: Sequence[render.DigestItem],
    ) -> str:
        known = {item.label for item in existing}
        fresh = [item for item in new if item.label not in known]
        url = str(record.doc.get("ticket_url") or "")
        pending = record.doc.get("pending_comment")
        if not fresh and not isinstance(pending, Mapping):
            return url
        items, total_omitted = _capped(existing, omitted, fresh)
        shown = [item for item in fresh if item in items]
        limit = self.settings.max_body_chars
        body = render.digest_comment(shown, omitted=len(fresh) - len(shown), max_chars=limit) if fresh else ""
        if isinstance(pending, Mapping) and isinstance(pending.get("body"), str):
            body = render.pending_merge(body, pending["body"], limit) if body else pending["body"]
        changes = {"items": [i.as_doc() for i in items], "omitted": total_omitted}
        comments = int(record.doc.get("comments_count") or 0)
        self._post(
            key, record.version, str(record.doc["ticket_id"]), body=body, changes=changes, comments=comments
        )
        return url

    # ------------------------------------------------------------------------------------ helpers

    def _release(self, key: str, version: str, changes: Mapping[str, Any]) -> None:
        """Best effort: let the next run take over at once instead of waiting for the claim timeout."""
        try:
            self.ledger.update(key, changes, version)
        except GatehouseError as exc:
            event(_log, "tickets: could not release claim", run_id=self.run_id, key=key, error=str(exc))

    def _outcome(self, step: Step, *, acked: bool, url: str | None = None) -> Outcome:
        fp, ids = step.item.fingerprint, step.item.ack_ids
        return Outcome(
            fp.label,
            fp.key,
            step.decision.action,
            step.decision.reason,
            url or (step.entry.ticket_url if step.entry else None),
            acked=ids if acked else (),
            left=() if acked else ids,
        )

    def _failed(self, step: Step, exc: Exception) -> Outcome:
        fp = step.item.fingerprint
        return Outcome(
            fp.label,
            fp.key,
            step.decision.action,
            step.decision.reason,
            left=step.item.ack_ids,
            error=_describe(exc),
        )


def _capped(
    existing: Sequence[render.DigestItem], omitted: int, new: Sequence[render.DigestItem]
) -> tuple[list[render.DigestItem], int]:
    known = {item.label for item in existing}
    items = list(existing)
    for item in new:
        if item.label in known:
            continue
        known.add(item.label)
        if len(items) < MAX_DIGEST_ITEMS:
            items.append(item)
        else:
            omitted += 1
    return items, omitted


def _version(record: Record | None) -> str:
    if record is None:
        raise StaleWriteError("ledger document vanished right after it was written")
    return record.version


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]
