"""gatehouse.tickets.lifecycle: create / comment / reopen window / won't-fix / cap / claims, as tables."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from gatehouse.tickets.lifecycle import Entry, Facts, PendingComment, decide, remember
from gatehouse.tickets.ports import Record, TicketState
from gatehouse.tickets.settings import TicketSettings

NOW = 1_800_000_000.0
HOUR, DAY = 3600.0, 86400.0
S = TicketSettings(reopen_window_seconds=7 * DAY, wontfix_worsen_factor=2.0, claim_timeout_seconds=600)
RUN = "run-b"

OPEN_ENTRY = Entry(
    key="fp",
    version="5",
    state="open",
    ticket_id="12",
    ticket_url="https://github.com/o/r/issues/12",
    opened_at=NOW - 10 * DAY,
    last_fired_at=NOW - 2 * DAY,
    peak_ms=2000.0,
    proposal="target-loadbalancer",
    incidents=("i-1",),
    cleared=(),
)
OPEN = TicketState("12", "https://github.com/o/r/issues/12", "open")
DONE_RECENTLY = TicketState("12", "u", "closed", "completed", closed_at=NOW - 3 * DAY)
DONE_LONG_AGO = TicketState("12", "u", "closed", "completed", closed_at=NOW - 30 * DAY)
DONE_NO_DATE = TicketState("12", "u", "closed", "completed")
WONTFIX = TicketState("12", "u", "closed", "not_planned")
WONTFIX_LABEL = TicketState("12", "u", "closed", "completed", labels=("bug", "WontFix"))
SUPPRESSED = replace(OPEN_ENTRY, state="suppressed", suppressed_peak_ms=2000.0, peak_ms=2500.0)


def claimed(by: str | None, age: float) -> Entry:
    return Entry(key="fp", version="1", state="claimed", claimed_by=by, claimed_at=NOW - age)


def facts(opened: tuple[str, ...] = (), closed: tuple[str, ...] = (), peak: float | None = 2100.0) -> Facts:
    return Facts(opened, closed, peak)


CASES = [
    # (name, facts, entry, ticket, kwargs, action, reason fragment)
    ("new problem", facts(("i-1",)), None, None, {}, "create", "new problem"),
    ("cleared without ticket", facts(closed=("i-1",)), None, None, {}, "ignore", "never had a ticket"),
    ("over the cap", facts(("i-1",)), None, None, {"can_create": False}, "overflow-to-digest", "cap of 10"),
    ("already in digest", facts(("i-1",)), None, None, {"in_digest": True}, "ignore", "digest"),
    (
        "live claim elsewhere",
        facts(("i-1",)),
        claimed("run-a", 60),
        None,
        {},
        "defer",
        "run run-a is creating",
    ),
    ("abandoned claim", facts(("i-1",)), claimed("run-a", 3600), None, {}, "create", "resuming"),
    ("released claim", facts(("i-1",)), claimed(None, 10), None, {}, "create", "resuming"),
    ("own claim", facts(("i-1",)), claimed(RUN, 10), None, {}, "create", "resuming"),
    (
        "overflowed before",
        facts(("i-1",)),
        Entry("fp", "1", "digest", digest_bucket="2027011509"),
        None,
        {},
        "create",
        "over the hourly cap in 2027011509",
    ),
    (
        "re-fire, ticket open",
        facts(("i-2",)),
        OPEN_ENTRY,
        OPEN,
        {},
        "comment",
        "1 new incident(s); ticket 12 is open",
    ),
    ("cleared, ticket open", facts(closed=("i-1",)), OPEN_ENTRY, OPEN, {}, "comment-cleared", "cleared"),
    ("redelivery", facts(("i-1",)), OPEN_ENTRY, OPEN, {}, "ignore", "already recorded"),
    (
        "redelivered clear",
        facts(closed=("i-1",)),
        replace(OPEN_ENTRY, cleared=("i-1",)),
        OPEN,
        {},
        "ignore",
        "already recorded",
    ),
    (
        "re-fire within window",
        facts(("i-2",)),
        OPEN_ENTRY,
        DONE_RECENTLY,
        {},
        "comment",
        "within the 7.0 days",
    ),
    (
        "re-fire after window",
        facts(("i-2",)),
        OPEN_ENTRY,
        DONE_LONG_AGO,
        {},
        "create-linked",
        "beyond the 7.0 days",
    ),
    (
        "no close date, last fire recent",
        facts(("i-2",)),
        OPEN_ENTRY,
        DONE_NO_DATE,
        {},
        "comment",
        "last fired",
    ),
    (
        "no close date, last fire old",
        facts(("i-2",)),
        replace(OPEN_ENTRY, last_fired_at=NOW - 9 * DAY),
        DONE_NO_DATE,
        {},
        "create-linked",
        "last fired",
    ),
    (
        "after window but over cap",
        facts(("i-2",)),
        OPEN_ENTRY,
        DONE_LONG_AGO,
        {"can_create": False},
        "overflow-to-digest",
        "beyond",
    ),
    (
        "cleared after close",
        facts(closed=("i-1",)),
        OPEN_ENTRY,
        DONE_RECENTLY,
        {},
        "comment-cleared",
        "closed",
    ),
    (
        "won't fix",
        facts(("i-2",), peak=3000.0),
        OPEN_ENTRY,
        WONTFIX,
        {},
        "suppressed",
        "3,000 ms < 2 x 2,000 ms",
    ),
    (
        "won't fix by label",
        facts(("i-2",), peak=3000.0),
        OPEN_ENTRY,
        WONTFIX_LABEL,
        {},
        "suppressed",
        "won't fix",
    ),
    (
        "won't fix, now worse",
        facts(("i-2",), peak=4000.0),
        OPEN_ENTRY,
        WONTFIX,
        {},
        "create-linked",
        "4,000 ms ≥ 2 x 2,000 ms",
    ),
    (
        "suppressed floor is kept, not the later peak",
        facts(("i-3",), peak=4100.0),
        SUPPRESSED,
        WONTFIX,
        {},
        "create-linked",
        "≥ 2 x 2,000 ms",
    ),
    (
        "suppressed, not worse",
        facts(("i-3",), peak=3900.0),
        SUPPRESSED,
        WONTFIX,
        {},
        "suppressed",
        "3,900 ms <",
    ),
    ("suppressed, redelivery", facts(("i-1",)), SUPPRESSED, WONTFIX, {}, "ignore", "won't-fix"),
    ("won't fix, no peak", facts(("i-2",), peak=None), OPEN_ENTRY, WONTFIX, {}, "suppressed", "no peak"),
    (
        "won't fix, worse, over cap",
        facts(("i-2",), peak=9000.0),
        OPEN_ENTRY,
        WONTFIX,
        {"can_create": False},
        "overflow-to-digest",
        "worse",
    ),
    ("won't fix, only cleared", facts(closed=("i-1",)), OPEN_ENTRY, WONTFIX, {}, "suppressed", "won't fix"),
    ("human reopened a won't fix", facts(("i-3",)), SUPPRESSED, OPEN, {}, "comment", "is open"),
    ("ticket deleted", facts(("i-2",)), OPEN_ENTRY, None, {}, "create", "no longer exists"),
    ("ticket deleted, nothing new", facts(("i-1",)), OPEN_ENTRY, None, {}, "ignore", "no longer exists"),
    (
        "comment in flight elsewhere",
        facts(("i-2",)),
        replace(OPEN_ENTRY, pending_comment=PendingComment("body", "run-a", NOW - 30)),
        OPEN,
        {},
        "defer",
        "posting a comment",
    ),
    (
        "comment left by a crash",
        facts(("i-1",)),
        replace(OPEN_ENTRY, pending_comment=PendingComment("body", "run-a", NOW - HOUR)),
        OPEN,
        {},
        "comment",
        "earlier run recorded",
    ),
    (
        "comment released after a failure",
        facts(("i-1",)),
        replace(OPEN_ENTRY, pending_comment=PendingComment("body", None, NOW - 5)),
        OPEN,
        {},
        "comment",
        "earlier run recorded",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case[0] for case in CASES])
def test_lifecycle_table(case: tuple[Any, ...]) -> None:
    _, facts_, entry, ticket, kwargs, action, reason = case
    decision = decide(facts_, entry, ticket, now=NOW, settings=S, run_id=RUN, **kwargs)
    assert decision.action == action
    assert reason in decision.reason


def test_links_and_suppression_floor() -> None:
    linked = decide(facts(("i-2",)), OPEN_ENTRY, DONE_LONG_AGO, now=NOW, settings=S, run_id=RUN)
    assert linked.link_to == "12"
    suppressed = decide(facts(("i-2",), peak=3000.0), OPEN_ENTRY, WONTFIX, now=NOW, settings=S, run_id=RUN)
    assert suppressed.suppressed_peak_ms == 2000.0


def test_zero_reopen_window_always_links() -> None:
    settings = TicketSettings(reopen_window_seconds=0)
    decision = decide(facts(("i-2",)), OPEN_ENTRY, DONE_RECENTLY, now=NOW, settings=settings, run_id=RUN)
    assert decision.action == "create-linked"


def test_entry_from_a_ledger_record_is_lenient() -> None:
    record = Record(
        {
            "state": "open",
            "ticket_id": "7",
            "peak_ms": 1200,
            "incidents": ["a", 3, "b"],
            "comments_count": 2,
            "pending_comment": {"body": "x", "by": None, "at": 5},
            "claimed_at": True,  # wrong type: ignored
        },
        "v9",
    )
    entry = Entry.from_record("k", record)
    assert (entry.state, entry.ticket_id, entry.peak_ms, entry.incidents) == ("open", "7", 1200.0, ("a", "b"))
    assert entry.pending_comment == PendingComment("x", None, 5.0)
    assert entry.claimed_at is None and entry.version == "v9"
    assert Entry.from_record("k", Record({"state": "weird"}, "1")).state == "claimed"


def test_remember_keeps_the_last_fifty_without_repeats() -> None:
    kept = remember([str(i) for i in range(49)], ["48", "49", "50", "50"])
    assert kept[-2:] == ["49", "50"] and len(kept) == 50 and len(set(kept)) == 50
