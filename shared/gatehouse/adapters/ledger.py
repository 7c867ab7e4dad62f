"""The tickets ledger (``gatehouse.tickets.ports.Ledger``) in Firestore.

Exactly-once ticket creation rests on two Firestore guarantees, so this adapter uses them and
nothing weaker: ``DocumentReference.create`` fails with ALREADY_EXISTS when the document exists
(one claim wins), and an update with an ``update_time`` precondition fails with
FAILED_PRECONDITION when anyone wrote since it was read (optimistic concurrency; the emulator
answers FAILED_PRECONDITION for a missing document too, production may say NOT_FOUND). The version
handed to the job is that ``update_time`` as RFC 3339 text with all nine fractional digits, parsed
back into proto-plus's ``DatetimeWithNanoseconds`` so the precondition keeps full precision.

The hourly counter is a read-check-write in a ``@firestore.transactional`` function. Hour-bucket
and digest documents carry ``expire_at`` (a timestamp ``ttl_days`` after their hour) for a TTL
policy (``gcloud firestore fields ttls update expire_at --collection-group=gatehouse-tickets
--enable-ttl``); fingerprint documents never get one, because they hold won't-fix decisions and
the claims that make creation exactly-once. ``expire_at`` is stripped from what :meth:`get` returns
so callers see exactly the documents they wrote.
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1.field_path import FieldPath
from proto.datetime_helpers import DatetimeWithNanoseconds

from gatehouse.adapters.gapic import raise_mapped
from gatehouse.errors import TransientError
from gatehouse.tickets.ports import Record, StaleWriteError

COLLECTION = "gatehouse-tickets"
TTL_FIELD = "expire_at"
_EXPIRING = re.compile(r"^(?:bucket|digest)-(\d{10})$")
_CONTENTION_ATTEMPTS = 8


def version_of(stamp: datetime) -> str:
    """``update_time`` as RFC 3339 UTC text with nanoseconds (the ledger's opaque version)."""
    nanos = stamp.nanosecond if isinstance(stamp, DatetimeWithNanoseconds) else stamp.microsecond * 1000
    return f"{stamp.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%S')}.{nanos:09d}Z"


def parse_version(version: str) -> DatetimeWithNanoseconds:
    """The inverse of :func:`version_of`; StaleWriteError for text no write could have produced."""
    try:
        return DatetimeWithNanoseconds.from_rfc3339(version)
    except (ValueError, TypeError) as exc:
        raise StaleWriteError(f"not a ledger version: {version!r}") from exc


def _doc_id(key: str) -> str:
    # Firestore ids cannot contain '/'; ledger keys never do, but a stray one must not nest paths
    return key.replace("/", "|")


def _plain(value: Any) -> Any:
    """Comparable form of a document (tuples and lists alike, as Firestore stores both as arrays)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


class FirestoreLedger:
    """The tickets ``Ledger``: one collection, documents keyed by fingerprint / digest / bucket."""

    def __init__(
        self,
        project: str | None,
        database: str = "(default)",
        collection: str = COLLECTION,
        *,
        ttl_days: float = 30.0,
        client: firestore.Client | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = client or firestore.Client(project=project, database=database)
        self.collection = self.db.collection(collection)
        self.ttl = timedelta(days=ttl_days)
        self.clock = clock
        self._bucket_lock = threading.Lock()

    # -- Ledger ---------------------------------------------------------------------------------

    def get(self, key: str) -> Record | None:
        try:
            snapshot = self._ref(key).get()
        except Exception as exc:
            raise_mapped(exc, f"read ledger {key}")
        if not snapshot.exists:
            return None
        doc = snapshot.to_dict() or {}
        doc.pop(TTL_FIELD, None)
        return Record(doc, version_of(snapshot.update_time))

    def create_if_absent(self, key: str, doc: Mapping[str, Any]) -> bool:
        data = self._stamped(key, doc)
        try:
            self._ref(key).create(data)
        except gexc.AlreadyExists:
            # a commit the client retried (UNAVAILABLE) may have landed the first time: the claim
            # carries this run's id and time, so an identical document can only be our own write
            found = self.get(key)
            return found is not None and _plain(found.doc) == _plain(doc)
        except Exception as exc:
            raise_mapped(exc, f"create ledger {key}")
        return True

    def update(self, key: str, changes: Mapping[str, Any], precondition: str) -> str:
        stamp = parse_version(precondition)
        if not changes:  # Firestore refuses an empty update: check the version instead
            current = self.get(key)
            if current is None or current.version != precondition:
                raise StaleWriteError(f"ledger {key} changed since version {precondition}")
            return precondition
        # quoted field paths: each key is one top-level field, even with dots in it
        fields = {FieldPath(name).to_api_repr(): value for name, value in changes.items()}
        try:
            result = self._ref(key).update(fields, option=self.db.write_option(last_update_time=stamp))
        except (gexc.FailedPrecondition, gexc.NotFound) as exc:
            raise StaleWriteError(f"ledger {key} changed since version {precondition}") from exc
        except Exception as exc:
            raise_mapped(exc, f"update ledger {key}")
        return version_of(result.update_time)

    def increment_hour_bucket(self, bucket: str, cap: int) -> bool:
        key = f"bucket-{bucket}"
        ref = self._ref(key)
        expire_at = self._expiry(key)

        @firestore.transactional
        def take(transaction: firestore.Transaction) -> bool:
            snapshot = ref.get(transaction=transaction)
            count = (snapshot.to_dict() or {}).get("count", 0) if snapshot.exists else 0
            if not isinstance(count, int) or count >= cap:
                return False
            transaction.set(ref, {"count": count + 1, TTL_FIELD: expire_at})
            return True

        # the count only grows within its hour, so a full bucket read outside a transaction is final
        if self._count(ref) >= cap:
            return False
        # Threads of one process take turns: Firestore (and, much more slowly, the emulator, which
        # waits for a lock timeout) settles contending transactions by aborting all but one, so a
        # burst from one process would only contend with itself. Across processes the transaction
        # decides. The client retries an aborted commit; a read that loses its lock raises ABORTED
        # directly, so contention is retried here too, after a jittered pause.
        with self._bucket_lock:
            return self._increment(take, bucket)

    def _increment(self, take: Callable[[firestore.Transaction], bool], bucket: str) -> bool:
        for attempt in range(_CONTENTION_ATTEMPTS):
            try:
                return bool(take(self.db.transaction(max_attempts=5)))
            except (gexc.Aborted, ValueError) as exc:
                if not _contention(exc):
                    raise
                if attempt + 1 == _CONTENTION_ATTEMPTS:
                    raise TransientError(f"hour bucket {bucket}: contention, gave up: {exc}") from exc
                time.sleep(random.uniform(0.01, 0.05) * (attempt + 1))  # noqa: S311 - jitter
            except Exception as exc:
                raise_mapped(exc, f"increment hour bucket {bucket}")
        raise AssertionError("unreachable")  # pragma: no cover

    # -- helpers --------------------------------------------------------------------------------

    def _count(self, ref: firestore.DocumentReference) -> int:
        try:
            snapshot = ref.get()
        except Exception as exc:
            raise_mapped(exc, f"read {ref.id}")
        count = (snapshot.to_dict() or {}).get("count", 0) if snapshot.exists else 0
        return count if isinstance(count, int) else 0

    def _ref(self, key: str) -> firestore.DocumentReference:
        return self.collection.document(_doc_id(key))

    def _expiry(self, key: str) -> datetime:
        match = _EXPIRING.match(key)
        start = (
            datetime.strptime(match.group(1), "%Y%m%d%H").replace(tzinfo=UTC)
            if match
            else datetime.fromtimestamp(self.clock(), UTC)
        )
        return start + self.ttl

    def _stamped(self, key: str, doc: Mapping[str, Any]) -> dict[str, Any]:
        data = dict(doc)
        if _EXPIRING.match(key):
            data[TTL_FIELD] = self._expiry(key)
        return data


def _contention(exc: BaseException) -> bool:
    if isinstance(exc, gexc.Aborted):
        return True
    return isinstance(exc, ValueError) and isinstance(exc.__cause__, gexc.Aborted)
