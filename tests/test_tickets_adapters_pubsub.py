"""PubSubMessages against the real Pub/Sub emulator: drain, acknowledge in chunks, redelivery, and
one tickets job run pulling from it."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from google.cloud import pubsub_v1

from gatehouse.adapters.pubsub import PubSubMessages
from gatehouse.local import processes
from gatehouse.tickets import TicketPorts, TicketSettings, run
from gatehouse.tickets.ports import PulledMessage
from tests.tickets_fakes import (
    T0,
    FakeBundles,
    FakeLedger,
    FakeStats,
    FakeTracker,
    incident,
    message,
    scenario_minutes,
    stats_response,
)

PROJECT = "pubsub-test"


@dataclass
class Sub:
    topic: str
    name: str
    publisher: pubsub_v1.PublisherClient
    subscriber: pubsub_v1.SubscriberClient

    def publish(self, payloads: list[bytes], **attributes: str) -> None:
        futures = [self.publisher.publish(self.topic, data, **attributes) for data in payloads]
        for future in futures:
            future.result(timeout=30)


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[processes.Managed]:
    managed = processes.start_pubsub_emulator(tmp_path_factory.mktemp("pubsub"))
    yield managed
    processes.stop(managed)


@pytest.fixture
def sub(emulator: processes.Managed, monkeypatch: pytest.MonkeyPatch) -> Iterator[Sub]:
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", emulator.host_port)
    suffix = uuid.uuid4().hex[:8]
    topic = f"projects/{PROJECT}/topics/incidents-{suffix}"
    name = f"projects/{PROJECT}/subscriptions/tickets-{suffix}"
    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    publisher.create_topic(name=topic)
    subscriber.create_subscription(request={"name": name, "topic": topic, "ack_deadline_seconds": 600})
    try:
        yield Sub(topic, name, publisher, subscriber)
    finally:
        subscriber.close()
        publisher.transport.close()


def drain(messages: PubSubMessages, batch: int = 1_000) -> list[PulledMessage]:
    got: list[PulledMessage] = []
    while pulled := messages.pull(batch):
        got += pulled
    return got


def test_drain_ack_in_chunks_then_empty(sub: Sub) -> None:
    sub.publish([f"m{i}".encode() for i in range(2_500)], source="test")
    messages = PubSubMessages(sub.name, pull_timeout=2)
    try:
        started = time.monotonic()
        got = drain(messages)
        assert len(got) == 2_500 and len({m.data for m in got}) == 2_500
        assert got[0].attributes == {"source": "test"} and isinstance(got[0].data, bytes)
        messages.ack([m.ack_id for m in got])  # 2,500 ids: three acknowledge calls
        assert messages.pull(1_000) == []
        assert time.monotonic() - started < 20
    finally:
        messages.close()


def test_unacked_messages_come_back(sub: Sub) -> None:
    sub.publish([b"a", b"b", b"c"])
    messages = PubSubMessages(sub.name, pull_timeout=2)
    try:
        first = drain(messages)
        assert sorted(m.data for m in first) == [b"a", b"b", b"c"]
        messages.ack([m.ack_id for m in first if m.data == b"a"])
        assert messages.pull(10) == []  # the rest is leased until its ack deadline
        # release ends the lease now (as the deadline would): only what was not acknowledged comes back
        messages.release([m.ack_id for m in first if m.data != b"a"])
        again = drain(messages)
        assert sorted(m.data for m in again) == [b"b", b"c"]
        messages.ack([m.ack_id for m in again])
        assert messages.pull(10) == []
    finally:
        messages.close()


class _Recorder:
    def __init__(self) -> None:
        self.pulls: list[dict[str, Any]] = []
        self.acks: list[int] = []

    def pull(self, request: dict[str, Any], timeout: float) -> Any:
        self.pulls.append(request)
        return type("Response", (), {"received_messages": []})()

    def acknowledge(self, request: dict[str, Any]) -> None:
        self.acks.append(len(request["ack_ids"]))


def test_pull_and_ack_stay_within_api_limits() -> None:
    recorder = _Recorder()
    messages = PubSubMessages("projects/p/subscriptions/s", client=recorder)
    assert messages.pull(5_000) == []
    messages.ack([str(i) for i in range(2_345)])
    assert recorder.pulls[0]["max_messages"] == 1_000 and recorder.acks == [1_000, 1_000, 345]


def test_job_run_pulls_and_acknowledges(sub: Sub) -> None:
    started = T0 + 3600
    sub.publish([message(incident(incident_id=f"i-{n}", started_at=started)) for n in range(3)])
    sub.publish([b"not json"])
    stats = FakeStats()
    stats.default = lambda proxy, start, end: stats_response(proxy, scenario_minutes("target"), start=T0)
    messages = PubSubMessages(sub.name, pull_timeout=2)
    try:
        ports = TicketPorts(messages, FakeLedger(), FakeTracker(), stats, FakeBundles())
        report = run(ports, TicketSettings(), clock=lambda: started + 1200.0, sleep=lambda s: None)
        assert report.pulled == 4 and report.drained and report.acked == 4 and report.exit_code == 0
        assert report.actions() == {"create": 1} and len(report.malformed) == 1
        assert messages.pull(10) == []
    finally:
        messages.close()
