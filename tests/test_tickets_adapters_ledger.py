"""FirestoreLedger against the real Firestore emulator: claims, guarded updates, the hourly cap, and
the tickets job end to end on the real ledger (two runs at once still make one ticket each)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from gatehouse.adapters.ledger import FirestoreLedger, parse_version, version_of
from gatehouse.local import processes
from gatehouse.tickets import TicketPorts, TicketSettings, run
from gatehouse.tickets.job import RunReport
from gatehouse.tickets.ports import StaleWriteError
from tests.tickets_fakes import (
    T0,
    FakeBundles,
    FakeStats,
    FakeSubscription,
    FakeTracker,
    direct_bundle,
    incident,
    message,
    scenario_minutes,
    stats_response,
)

PROJECT = "ledger-test"
STARTED = T0 + 3600
NOW = STARTED + 20 * 60
SEPARATE = 3


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[processes.Managed]:
    managed = processes.start_firestore_emulator(tmp_path_factory.mktemp("firestore"))
    yield managed
    processes.stop(managed)


@pytest.fixture
def ledger(emulator: processes.Managed, monkeypatch: pytest.MonkeyPatch) -> FirestoreLedger:
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", emulator.host_port)
    return FirestoreLedger(PROJECT, collection=f"tickets-{uuid.uuid4().hex[:8]}")


def test_version_text_round_trips_with_nanoseconds() -> None:
    text = "2026-03-14T14:00:00.123456789Z"
    assert version_of(parse_version(text)) == text
    with pytest.raises(StaleWriteError):
        parse_version("7")


def test_create_if_absent_once(ledger: FirestoreLedger) -> None:
    assert ledger.get("fp1") is None
    assert ledger.create_if_absent("fp1", {"kind": "fingerprint", "state": "claimed", "claimed_by": "r1"})
    assert not ledger.create_if_absent("fp1", {"kind": "fingerprint", "state": "claimed", "claimed_by": "r2"})
    record = ledger.get("fp1")
    assert record is not None and record.doc["claimed_by"] == "r1"
    assert record.version.endswith("Z") and len(record.version.split(".")[1]) == 10  # 9 digits + Z


def test_update_guards_on_the_version(ledger: FirestoreLedger) -> None:
    ledger.create_if_absent("fp1", {"state": "claimed", "pending_comment": {"body": "x", "by": "r1"}})
    first = ledger.get("fp1")
    assert first is not None
    second = ledger.update("fp1", {"state": "open", "pending_comment": None, "a.b": 1}, first.version)
    record = ledger.get("fp1")
    assert record is not None and record.version == second
    assert record.doc == {"state": "open", "pending_comment": None, "a.b": 1}  # top-level, replaced
    with pytest.raises(StaleWriteError):
        ledger.update("fp1", {"state": "suppressed"}, first.version)
    with pytest.raises(StaleWriteError):
        ledger.update("missing", {"state": "open"}, second)
    assert ledger.update("fp1", {}, second) == second  # nothing to write, but the guard still holds
    with pytest.raises(StaleWriteError):
        ledger.update("fp1", {}, first.version)
    assert ledger.get("fp1").doc["state"] == "open"  # type: ignore[union-attr]


def test_racing_claims_have_one_winner(ledger: FirestoreLedger) -> None:
    barrier = threading.Barrier(2, timeout=10)

    def claim(run_id: str) -> bool:
        barrier.wait()
        return ledger.create_if_absent("fp-race", {"state": "claimed", "claimed_by": run_id})

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(claim, ["r1", "r2"]))
    assert sorted(results) == [False, True]


def test_hour_bucket_cap_holds_under_contention(ledger: FirestoreLedger) -> None:
    barrier = threading.Barrier(20, timeout=10)

    def take(_: int) -> bool:
        barrier.wait()
        return ledger.increment_hour_bucket("2025031415", 5)

    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(take, range(20)))
    assert results.count(True) == 5
    record = ledger.get("bucket-2025031415")
    assert record is not None and record.doc == {"count": 5}  # the TTL stamp is not part of the doc
    raw = ledger.collection.document("bucket-2025031415").get().to_dict() or {}
    assert raw["expire_at"].year == 2025 and raw["expire_at"].month == 4  # 30 days after the hour


def test_hour_bucket_cap_holds_across_processes(ledger: FirestoreLedger) -> None:
    # one ledger (client) per thread, as separate job processes would have: only the transaction
    # keeps them apart
    ledgers = [FirestoreLedger(PROJECT, collection=ledger.collection.id) for _ in range(SEPARATE)]
    barrier = threading.Barrier(SEPARATE, timeout=10)

    def take(other: FirestoreLedger) -> list[bool]:
        barrier.wait()
        return [other.increment_hour_bucket("2025031416", 2) for _ in range(2)]

    with ThreadPoolExecutor(SEPARATE) as pool:
        results = [r for rs in pool.map(take, ledgers) for r in rs]
    assert results.count(True) == 2
    assert ledger.get("bucket-2025031416").doc == {"count": 2}  # type: ignore[union-attr]


def test_fingerprints_never_expire_digests_do(ledger: FirestoreLedger) -> None:
    ledger.create_if_absent("0" * 32, {"kind": "fingerprint"})
    ledger.create_if_absent("digest-2025031415", {"kind": "digest"})
    docs = {d.id: d.to_dict() or {} for d in ledger.collection.stream()}
    assert "expire_at" not in docs["0" * 32] and "expire_at" in docs["digest-2025031415"]


def test_two_job_runs_at_once_on_the_real_ledger(ledger: FirestoreLedger) -> None:
    tracker, bundles, stats = FakeTracker(), FakeBundles(), FakeStats()
    stats.default = lambda proxy, start, end: stats_response(proxy, scenario_minutes("target"), start=T0)
    docs = [incident(incident_id=f"i-{p}", proxy=f"svc-{p}", started_at=STARTED) for p in range(4)]
    for p in range(4):
        bundles.bundles[f"svc-{p}"] = direct_bundle()
    subs = [FakeSubscription([message(d) for d in docs]) for _ in range(2)]  # both see everything
    settings = TicketSettings()
    reports: dict[str, RunReport] = {}
    barrier = threading.Barrier(2, timeout=10)

    def job(name: str, sub: FakeSubscription) -> None:
        barrier.wait()
        ports = TicketPorts(sub, ledger, tracker, stats, bundles)
        reports[name] = run(ports, settings, clock=lambda: NOW, sleep=lambda s: None, run_id=name)

    threads = [threading.Thread(target=job, args=(f"run-{i}", sub)) for i, sub in enumerate(subs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert set(reports) == {"run-0", "run-1"}
    assert not [f for r in reports.values() for f in r.failures]
    labels = sorted(
        label for i in tracker.tickets() for label in i.labels if label.startswith("gatehouse-fp-")
    )
    assert len(labels) == len(set(labels)) == 4  # one ticket per fingerprint
    assert sum(r.actions().get("create", 0) for r in reports.values()) == 4
    # whatever a run left (deferred behind the other's claim) is settled by the next run
    for sub in subs:
        sub.redeliver()
        ports = TicketPorts(sub, ledger, tracker, stats, bundles)
        assert run(ports, settings, clock=lambda: NOW, sleep=lambda s: None).exit_code == 0
        assert sub.pending == 0
    assert len(tracker.tickets()) == 4
    bucket = ledger.get("bucket-2025031415")
    assert bucket is not None and bucket.doc == {"count": 4}
