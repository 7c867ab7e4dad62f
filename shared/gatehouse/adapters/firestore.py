"""Leases and per-service outcomes in Firestore (the Firestore emulator on one machine).

A lease makes the many audit entries of one deploy, handled by different function instances at
once, converge on one new proxy revision: only the holder writes to Apigee; the others wait a
little or hand the event back to Pub/Sub, and find nothing left to do when it comes back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore

from gatehouse.adapters.gapic import raise_mapped
from gatehouse.ports import Outcome

LEASES = "gatehouse-leases"
OUTCOMES = "gatehouse-outcomes"


@dataclass(frozen=True)
class FirestoreLease:
    key: str
    holder: str


def _doc_id(key: str) -> str:
    # Firestore document ids cannot contain '/'; '|' cannot occur in our keys
    return key.replace("/", "|")


class FirestoreCoordinator:
    """The ``gatehouse.ports.Coordinator``."""

    def __init__(self, project: str | None, database: str = "(default)", *, prefix: str = "") -> None:
        self.db = firestore.Client(project=project, database=database)
        self.leases = self.db.collection(prefix + LEASES)
        self.outcomes_ref = self.db.collection(prefix + OUTCOMES)

    def acquire(self, key: str, holder: str, ttl_seconds: float) -> FirestoreLease | None:
        ref = self.leases.document(_doc_id(key))
        now = datetime.now(UTC)

        @firestore.transactional
        def take(transaction: firestore.Transaction) -> bool:
            snapshot = ref.get(transaction=transaction)
            if snapshot.exists:
                data = snapshot.to_dict() or {}
                expires = data.get("expires")
                if data.get("holder") != holder and isinstance(expires, datetime) and expires > now:
                    return False
            transaction.set(
                ref,
                {
                    "key": key,
                    "holder": holder,
                    "expires": now + timedelta(seconds=ttl_seconds),
                    "acquired": now,
                },
            )
            return True

        try:
            taken = take(self.db.transaction(max_attempts=3))
        except gexc.Aborted:
            return None  # contention: someone else is taking it right now
        except Exception as exc:
            raise_mapped(exc, f"acquire lease {key}")
        return FirestoreLease(key, holder) if taken else None

    def release(self, lease: Any) -> None:
        ref = self.leases.document(_doc_id(lease.key))

        @firestore.transactional
        def drop(transaction: firestore.Transaction) -> None:
            snapshot = ref.get(transaction=transaction)
            if snapshot.exists and (snapshot.to_dict() or {}).get("holder") == lease.holder:
                transaction.delete(ref)

        try:
            drop(self.db.transaction(max_attempts=3))
        except Exception as exc:  # an unreleased lease expires on its own; never fail the event for it
            if not isinstance(exc, gexc.GoogleAPICallError | OSError):
                raise

    def record(self, outcome: Outcome) -> None:
        self.record_many([outcome])

    def record_many(self, outcomes: list[Outcome]) -> None:
        # batches of 500 writes (Firestore's limit): a 1,000-service sweep records in two calls
        try:
            for start in range(0, len(outcomes), 500):
                batch = self.db.batch()
                for outcome in outcomes[start : start + 500]:
                    batch.set(self.outcomes_ref.document(_doc_id(outcome.key)), _outcome_data(outcome))
                batch.commit()
        except Exception as exc:
            raise_mapped(exc, "record outcomes")

    def outcomes(self, key_prefix: str = "") -> list[Outcome]:
        query = self.outcomes_ref.order_by("key")
        if key_prefix:
            query = query.where(filter=firestore.FieldFilter("key", ">=", key_prefix)).where(
                filter=firestore.FieldFilter("key", "<", key_prefix + "\uf8ff")
            )
        found = []
        for snapshot in query.stream():
            d = snapshot.to_dict() or {}
            found.append(
                Outcome(
                    key=str(d.get("key", "")),
                    result=str(d.get("result", "")),
                    reason=str(d.get("reason") or ""),
                    proxy=d.get("proxy"),
                    revision=d.get("revision"),
                    at=str(d.get("at") or ""),
                    correlation_id=d.get("correlation_id"),
                    product=d.get("product"),
                )
            )
        return found


def _outcome_data(outcome: Outcome) -> dict[str, Any]:
    return {
        "key": outcome.key,
        "result": outcome.result,
        "reason": outcome.reason[:2000],
        "proxy": outcome.proxy,
        "revision": outcome.revision,
        "at": outcome.at,
        "correlation_id": outcome.correlation_id,
        "product": outcome.product,
    }


ROLLOUTS = "gatehouse-rollouts"


class FirestoreRolloutStore:
    """The ``gatehouse.rollouts.ports.RolloutStore``: one document per key in ``gatehouse-rollouts``
    (``fleet``, ``rollout|<id>``, ``config|<id>``). Writers hold the rollout lease, so plain sets
    suffice; a whole-document set is atomic, so a crash leaves either the old or the new record."""

    def __init__(self, project: str | None, database: str = "(default)", *, prefix: str = "") -> None:
        self.db = firestore.Client(project=project, database=database)
        self.docs = self.db.collection(prefix + ROLLOUTS)

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            snapshot = self.docs.document(_doc_id(key)).get()
        except Exception as exc:
            raise_mapped(exc, f"read {key}")
        return (snapshot.to_dict() or {}) if snapshot.exists else None

    def put(self, key: str, doc: Any) -> None:
        try:
            self.docs.document(_doc_id(key)).set(dict(doc))
        except Exception as exc:
            raise_mapped(exc, f"write {key}")
