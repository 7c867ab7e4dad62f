"""The five things the tickets job talks to, as minimal ``typing.Protocol``s.

Adapters (Pub/Sub pull, Firestore, GitHub/Jira/file trackers, the Apigee stats and bundle reads)
live in ``gatehouse.adapters``; tests use the in-memory fakes in ``tests/tickets_fakes.py``, which keep
the same semantics (create-if-absent, optimistic concurrency, label search).

Ledger
------
One document store, three kinds of documents. Every write is either a create-if-absent or an update
guarded by the version (Firestore ``update_time``) read before, so two runs never both act on the
same fingerprint: the one whose write lands first wins, the other re-reads.

``<32 hex of sha256 over the configured (field, value) pairs>`` (kind ``fingerprint``; one per problem)::

    kind            "fingerprint"
    key             "project=../environment=../proxy=../family=../proposal=.." (configured fields)
    fields          {project, environment, proxy, family, proposal}   all five, for humans and queries
    label           "gatehouse-fp-<12 hex>"    the tracker label that finds the ticket after a crash
    state           "claimed" | "open" | "suppressed" | "digest"
                    claimed: a run is creating the ticket (ticket_id null until it is done)
                    open: the ticket exists (humans may have closed it; the tracker is the truth)
                    suppressed: closed as won't-fix; only worse evidence opens a new ticket
                    digest: overflowed the hourly cap, listed in digest ``digest_bucket``; no ticket
    ticket_id, ticket_url            null while claimed
    previous_ticket_ids              older tickets of this fingerprint, newest last
    claimed_by, claimed_at           run id and epoch seconds of the claim; null when released
    opened_at, last_fired_at         epoch seconds
    peak_ms                          worst latency recorded on the current ticket
    suppressed_peak_ms               peak_ms when the won't-fix was first seen
    proposal                         proposal type of the current ticket
    incidents                        last 50 incident ids ticketed or commented (open notifications)
    cleared                          last 50 incident ids whose "cleared" comment went out
    comments_count                   comments gatehouse posted on the current ticket
    pending_comment                  {body, by, at} recorded before the tracker call, removed after;
                                     a later run posts a stale one (outbox), so no update is lost
    digest_bucket                    "YYYYMMDDHH" when state is digest

``digest-<YYYYMMDDHH>`` (kind ``digest``; one per UTC hour that overflowed): kind, bucket, label
(``gatehouse-digest-<bucket>``), state ("claimed" | "open"), ticket_id, ticket_url, claimed_by,
claimed_at, pending_comment, comments_count, items (list of {label, key, proxy, environment,
family, proposal, peak_ms, incident_url}; at most 1,000) and omitted (items beyond that).

``bucket-<YYYYMMDDHH>``: {count} - new tickets claimed in that hour, written only by
:meth:`Ledger.increment_hour_bucket` in a transaction (and read with :meth:`Ledger.get`).

With Firestore: ``create_if_absent`` is ``DocumentReference.create`` (AlreadyExists -> False),
``update`` is ``DocumentReference.update`` with ``write_option(last_update_time=...)`` (the version
is that timestamp as RFC 3339 text with nanoseconds; FailedPrecondition/NotFound -> StaleWriteError),
and the bucket increment is a ``@transactional`` read-check-write. The adapter may stamp digest and
bucket documents with a timestamp for a TTL policy; fingerprint documents must never expire (they
carry won't-fix decisions and the claims that make creation exactly-once).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, Protocol

from gatehouse.errors import TransientError


class StaleWriteError(TransientError):
    """A guarded ledger write lost: the document changed (or appeared) since it was read."""


@dataclass(frozen=True)
class Record:
    """A ledger document and its version (Firestore ``update_time`` as text; opaque)."""

    doc: Mapping[str, Any]
    version: str


class Ledger(Protocol):
    def get(self, key: str) -> Record | None: ...

    def create_if_absent(self, key: str, doc: Mapping[str, Any]) -> bool:
        """Create ``key``; False (and no write) when it already exists."""
        ...

    def update(self, key: str, changes: Mapping[str, Any], precondition: str) -> str:
        """Merge top-level ``changes`` if the version is still ``precondition``; return the new version.

        Raises:
            StaleWriteError: the document changed or disappeared since that version was read.
        """
        ...

    def increment_hour_bucket(self, bucket: str, cap: int) -> bool:
        """In one transaction: if ``bucket``'s count is below ``cap``, add one and return True."""
        ...


@dataclass(frozen=True)
class TicketRef:
    id: str
    url: str
    # requested labels the created ticket does not carry (GitHub drops them silently when the token
    # lacks push access); finding the ticket by its fingerprint label then fails
    missing_labels: tuple[str, ...] = ()


@dataclass(frozen=True)
class TicketState:
    """What the tracker says about a ticket now."""

    id: str
    url: str
    state: Literal["open", "closed"]
    closed_reason: Literal["completed", "not_planned"] | None = None
    labels: tuple[str, ...] = ()
    closed_at: float | None = None  # epoch seconds, when the tracker reports it


class Tracker(Protocol):
    def create_issue(self, title: str, body: str, labels: Sequence[str]) -> TicketRef: ...
    def comment(self, ticket_id: str, body: str) -> None: ...

    def get(self, ticket_id: str) -> TicketState:
        """Raises ``gatehouse.errors.NotFoundError`` when the ticket no longer exists."""
        ...

    def find_by_label(self, label: str) -> list[TicketRef]:
        """Open and closed tickets carrying ``label`` (a consistent listing, not a search index)."""
        ...


class StatsApi(Protocol):
    def stats(
        self, environment: str, proxy: str, *, select: Sequence[str], start: int, end: int, time_unit: str
    ) -> Mapping[str, Any]:
        """``GET .../environments/{environment}/stats/apiproxy`` filtered to ``proxy``.

        ``select`` are the metric expressions, ``start``/``end`` epoch seconds (whole minutes, UTC),
        ``time_unit`` e.g. "minute"; returns the raw ``GoogleCloudApigeeV1Stats`` JSON.
        """
        ...


class BundleReader(Protocol):
    def deployed_bundle(self, environment: str, proxy: str) -> bytes | None:
        """The zip of the revision deployed in ``environment``; None when nothing is deployed."""
        ...

    def proxy_labels(self, proxy: str) -> Mapping[str, str] | None:
        """The labels of API proxy ``proxy`` of the organization; None when there is no such proxy."""
        ...


class PulledMessage(NamedTuple):
    ack_id: str
    data: bytes
    attributes: Mapping[str, str]


class Messages(Protocol):
    def pull(self, max_messages: int) -> list[PulledMessage]:
        """Up to ``max_messages`` messages; an empty list when the subscription is drained."""
        ...

    def ack(self, ack_ids: Sequence[str]) -> None: ...

    def release(self, ack_ids: Sequence[str]) -> None:
        """Make messages deliverable again now (ack deadline 0): what a run leaves for the next one
        must not stay hidden for the subscription's long ack deadline."""
        ...


@dataclass(frozen=True)
class TicketPorts:
    """Everything :func:`gatehouse.tickets.job.run` needs from the outside world."""

    messages: Messages
    ledger: Ledger
    tracker: Tracker
    stats: StatsApi
    bundles: BundleReader
