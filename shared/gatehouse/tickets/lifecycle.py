"""What to do with one fingerprint's new notifications, given its ledger entry and its ticket.

Pure and explicit, because this is where alert-to-ticket tools go wrong: a reopen window that
silently means "always new" or is ignored on one code path, duplicates from two senders, won't-fix
tickets reopened by the next flap, floods. The rules:

* no ticket yet -> ``create`` (or ``overflow-to-digest`` over the hourly cap; ``defer`` while another
  run holds a fresh claim; a ticketless claim left by a crash or a failed tracker call is resumed,
  not duplicated, whatever the cap and the digest say: it already holds its slot of the cap);
* ticket open -> ``comment`` for re-fires, ``comment-cleared`` when only "closed" notifications came;
* ticket closed as completed -> a re-fire within the reopen window (from the close, or from the last
  fire when the tracker does not say when) is a ``comment``; after it, ``create-linked``;
* ticket closed as won't-fix (reason not_planned or a won't-fix label) -> ``suppressed``, until the
  peak reaches ``wontfix_worsen_factor`` x the peak recorded when the won't-fix was first seen, then
  ``create-linked``;
* notifications the ledger already recorded -> ``ignore`` (Pub/Sub redelivers, Monitoring renotifies).

Humans close tickets; gatehouse never does. The tracker's state is the truth, the ledger only
remembers what gatehouse did.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from gatehouse.tickets.evidence import fmt_ms
from gatehouse.tickets.ports import Record, TicketState
from gatehouse.tickets.settings import TicketSettings

Action = Literal[
    "create",
    "create-linked",
    "comment",
    "comment-cleared",
    "suppressed",
    "overflow-to-digest",
    "ignore",
    "defer",
]
EntryState = Literal["claimed", "open", "suppressed", "digest"]
_STATES: tuple[EntryState, ...] = ("claimed", "open", "suppressed", "digest")
KEEP_IDS = 50  # incident ids remembered per fingerprint (dedupe of redeliveries and renotifications)
CREATES: frozenset[Action] = frozenset({"create", "create-linked"})


@dataclass(frozen=True)
class PendingComment:
    body: str
    by: str | None  # run id; None once released after a failed tracker call
    at: float


@dataclass(frozen=True)
class Entry:
    """A typed view of a fingerprint's ledger document (schema in ``gatehouse.tickets.ports``)."""

    key: str
    version: str
    state: EntryState
    ticket_id: str | None = None
    ticket_url: str | None = None
    previous_ticket_ids: tuple[str, ...] = ()
    claimed_by: str | None = None
    claimed_at: float | None = None
    opened_at: float | None = None
    last_fired_at: float | None = None
    peak_ms: float | None = None
    suppressed_peak_ms: float | None = None
    proposal: str | None = None
    incidents: tuple[str, ...] = ()
    cleared: tuple[str, ...] = ()
    comments_count: int = 0
    pending_comment: PendingComment | None = None
    digest_bucket: str | None = None

    @classmethod
    def from_record(cls, key: str, record: Record) -> Entry:
        doc = record.doc
        state = doc.get("state")
        pending = doc.get("pending_comment")
        return cls(
            key=key,
            version=record.version,
            state=state if state in _STATES else "claimed",
            ticket_id=_str(doc.get("ticket_id")),
            ticket_url=_str(doc.get("ticket_url")),
            previous_ticket_ids=_strs(doc.get("previous_ticket_ids")),
            claimed_by=_str(doc.get("claimed_by")),
            claimed_at=_float(doc.get("claimed_at")),
            opened_at=_float(doc.get("opened_at")),
            last_fired_at=_float(doc.get("last_fired_at")),
            peak_ms=_float(doc.get("peak_ms")),
            suppressed_peak_ms=_float(doc.get("suppressed_peak_ms")),
            proposal=_str(doc.get("proposal")),
            incidents=_strs(doc.get("incidents")),
            cleared=_strs(doc.get("cleared")),
            comments_count=int(_float(doc.get("comments_count")) or 0),
            pending_comment=_pending(pending) if isinstance(pending, Mapping) else None,
            digest_bucket=_str(doc.get("digest_bucket")),
        )


@dataclass(frozen=True)
class Facts:
    """This run's notifications for one fingerprint."""

    opened: tuple[str, ...] = ()  # incident ids of "open" notifications
    closed: tuple[str, ...] = ()  # incident ids of "closed" notifications
    peak_ms: float | None = None  # worst latency in the evidence (or the alert's observed value)


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str
    link_to: str | None = None  # create-linked: the earlier ticket's id
    suppressed_peak_ms: float | None = None  # suppressed: the floor a new ticket must beat


def decide(
    facts: Facts,
    entry: Entry | None,
    ticket: TicketState | None,
    *,
    now: float,
    settings: TicketSettings,
    run_id: str,
    can_create: bool = True,
    in_digest: bool = False,
) -> Decision:
    """The one thing to do for this fingerprint in this run, with the reason a human can check."""
    if entry is None or entry.ticket_id is None:
        return _no_ticket(
            facts,
            entry,
            now=now,
            settings=settings,
            run_id=run_id,
            can_create=can_create,
            in_digest=in_digest,
        )

    new_opened = [i for i in facts.opened if i not in entry.incidents]
    new_closed = [i for i in facts.closed if i not in entry.cleared]
    pending = entry.pending_comment
    if pending is not None and _held_by_other(pending.by, pending.at, now, settings, run_id):
        return Decision("defer", f"run {pending.by} is posting a comment on ticket {entry.ticket_id}")
    if ticket is None:
        if not new_opened:
            return Decision("ignore", f"ticket {entry.ticket_id} no longer exists and nothing re-fired")
        return _create(f"ticket {entry.ticket_id} no longer exists", can_create, settings)

    if _wont_fix(ticket, settings):
        floor = entry.suppressed_peak_ms if entry.state == "suppressed" else entry.peak_ms
        worse = (
            facts.peak_ms is not None
            and floor is not None
            and facts.peak_ms >= settings.wontfix_worsen_factor * floor
        )
        if new_opened and worse:
            return _create(
                f"worse since ticket {ticket.id} was closed as won't fix: peak {fmt_ms(facts.peak_ms)} ≥ "
                f"{settings.wontfix_worsen_factor:g} x {fmt_ms(floor)}",
                can_create,
                settings,
                link_to=ticket.id,
            )
        if entry.state == "suppressed" and not new_opened and not new_closed:
            return Decision("ignore", "already recorded (won't-fix ticket)")
        detail = (
            f"peak {fmt_ms(facts.peak_ms)} < {settings.wontfix_worsen_factor:g} x {fmt_ms(floor)}"
            if facts.peak_ms is not None and floor is not None
            else "no peak to compare"
        )
        return Decision(
            "suppressed", f"ticket {ticket.id} was closed as won't fix; {detail}", suppressed_peak_ms=floor
        )

    if not new_opened and not new_closed:
        if pending is not None:
            return Decision("comment", f"posting the update an earlier run recorded for ticket {ticket.id}")
        return Decision("ignore", "already recorded (redelivery or renotification)")
    if ticket.state == "open":
        if new_opened:
            return Decision("comment", f"{len(new_opened)} new incident(s); ticket {ticket.id} is open")
        return Decision(
            "comment-cleared", f"{len(new_closed)} incident(s) cleared; ticket {ticket.id} is open"
        )
    if not new_opened:
        return Decision(
            "comment-cleared", f"{len(new_closed)} incident(s) cleared; ticket {ticket.id} is closed"
        )
    anchor = ticket.closed_at or entry.last_fired_at or entry.opened_at or now
    age = now - anchor
    since = "closed" if ticket.closed_at else "last fired"
    if age <= settings.reopen_window_seconds:
        return Decision(
            "comment",
            f"re-fired {_duration(age)} after ticket {ticket.id} {since}, within the "
            f"{_duration(settings.reopen_window_seconds)} reopen window",
        )
    return _create(
        f"re-fired {_duration(age)} after ticket {ticket.id} {since}, beyond the "
        f"{_duration(settings.reopen_window_seconds)} reopen window",
        can_create,
        settings,
        link_to=ticket.id,
    )


def _no_ticket(
    facts: Facts,
    entry: Entry | None,
    *,
    now: float,
    settings: TicketSettings,
    run_id: str,
    can_create: bool,
    in_digest: bool,
) -> Decision:
    claimed = entry is not None and entry.state == "claimed"
    if (
        claimed
        and entry is not None
        and _held_by_other(entry.claimed_by, entry.claimed_at, now, settings, run_id)
    ):
        return Decision("defer", f"run {entry.claimed_by} is creating this ticket")
    if claimed:  # the claim holds a slot of the cap (and maybe a ticket): finish it, never list it
        return _create("resuming a ticket an earlier run claimed but did not finish", True, settings)
    if not facts.opened:
        return Decision("ignore", "cleared, but it never had a ticket of its own")
    if in_digest:
        return Decision("ignore", "already listed in this hour's digest")
    if entry is None:
        reason = "new problem"
    else:
        reason = f"was over the hourly cap in {entry.digest_bucket or 'an earlier hour'}; re-fired"
    return _create(reason, can_create, settings)


def _create(
    reason: str, can_create: bool, settings: TicketSettings, *, link_to: str | None = None
) -> Decision:
    if not can_create:
        return Decision(
            "overflow-to-digest",
            f"{reason}; the cap of {settings.max_new_tickets_per_hour} new tickets this hour is reached",
            link_to=link_to,
        )
    return Decision("create-linked" if link_to else "create", reason, link_to=link_to)


def _held_by_other(
    holder: str | None, since: float | None, now: float, settings: TicketSettings, run_id: str
) -> bool:
    """True while another live run holds a claim (one older than the timeout counts as abandoned)."""
    if holder is None or holder == run_id:
        return False
    return since is not None and now - since < settings.claim_timeout_seconds


def _wont_fix(ticket: TicketState, settings: TicketSettings) -> bool:
    if ticket.state != "closed":
        return False
    wanted = {label.lower() for label in settings.wontfix_labels}
    return ticket.closed_reason == "not_planned" or any(label.lower() in wanted for label in ticket.labels)


def _duration(seconds: float) -> str:
    seconds = max(seconds, 0)
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def remember(existing: Sequence[str], new: Sequence[str]) -> list[str]:
    """``existing`` plus ``new`` (no repeats), keeping the last :data:`KEEP_IDS`."""
    out = list(existing)
    out.extend(i for i in dict.fromkeys(new) if i not in out)
    return out[-KEEP_IDS:]


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _strs(value: Any) -> tuple[str, ...]:
    return tuple(v for v in value if isinstance(v, str)) if isinstance(value, list | tuple) else ()


def _pending(value: Mapping[str, Any]) -> PendingComment | None:
    body = _str(value.get("body"))
    return (
        None if body is None else PendingComment(body, _str(value.get("by")), _float(value.get("at")) or 0.0)
    )
