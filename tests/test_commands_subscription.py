"""The commands subscription against the real Pub/Sub emulator, created exactly as the local stack
creates it (deploy/terraform/pubsub.tf sets the same filter): commands and ``SECRET_ROTATE``
notifications are pushed to ``on_command``; Secret Manager's data-less ``TOPIC_CONFIGURED`` test
message is not, and does not end up in the dead-letter topic either (functions-framework answers
400 to a push without data, so unfiltered it would be retried into the dead-letter topic).

The emulator applies subscription filters from Google Cloud SDK 555.0.0 on (release notes,
2026-02-03); older ones store the filter and deliver everything, so the delivery test skips there.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from gatehouse.local import stack
from gatehouse.local.processes import start_pubsub_emulator, stop
from tests.conftest import wait_for


class Receiver(ThreadingHTTPServer):
    """Stands in for the functions: records every push and acknowledges it."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.pushed: list[dict[str, Any]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.pushed.append(json.loads(body)["message"])
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def pubsub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Receiver]]:
    emulator = start_pubsub_emulator(tmp_path / "logs")
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", emulator.host_port)  # restored afterwards
    receiver = Receiver()
    thread = threading.Thread(target=receiver.serve_forever, daemon=True)
    thread.start()
    try:
        yield emulator.host_port, receiver
    finally:
        receiver.shutdown()
        receiver.server_close()
        stop(emulator)


def _wired(host: str, receiver: Receiver) -> dict[str, str]:
    topics = {k: f"projects/{stack.PROJECT}/topics/{v}" for k, v in stack.TOPICS.items()}
    stack._create_topics(host, topics)
    stack._create_subscriptions(host, topics, {"on_run_event": receiver.url, "on_command": receiver.url})
    return topics


def _emulator_filters(host: str) -> bool:
    """Whether this emulator applies subscription filters (or only stores them)."""
    publisher, subscriber = stack._pubsub_clients(host)
    topic, subscription = "projects/probe-proj/topics/probe", "projects/probe-proj/subscriptions/probe"
    publisher.create_topic(name=topic)
    subscriber.create_subscription(
        request={"name": subscription, "topic": topic, "filter": 'attributes.kind = "keep"'}
    )
    publisher.publish(topic, b"x", kind="drop").result(timeout=30)
    publisher.publish(topic, b"x", kind="keep").result(timeout=30)
    time.sleep(0.5)
    pulled = subscriber.pull(subscription=subscription, max_messages=10, timeout=10).received_messages
    return {m.message.attributes["kind"] for m in pulled} == {"keep"}


def test_the_local_stack_filters_the_commands_subscription(pubsub: tuple[str, Receiver]) -> None:
    host, receiver = pubsub
    _wired(host, receiver)
    _, subscriber = stack._pubsub_clients(host)
    names = stack._subscription_names()
    assert subscriber.get_subscription(subscription=names["commands"]).filter == stack.COMMANDS_FILTER
    for key in ("run_events", "alerts", "dead_letter"):
        assert subscriber.get_subscription(subscription=names[key]).filter == "", key


def test_topic_configured_never_reaches_on_command_while_commands_do(pubsub: tuple[str, Receiver]) -> None:
    host, receiver = pubsub
    if not _emulator_filters(host):
        pytest.skip("this Pub/Sub emulator stores subscription filters but does not apply them (SDK < 555)")
    topics = _wired(host, receiver)
    publisher, subscriber = stack._pubsub_clients(host)
    secret = f"projects/{stack.PROJECT_NUMBER}/secrets/app-key"

    # what Secret Manager sends when a secret's topics are set: eventType only, no data
    publisher.publish(topics["commands"], b"", eventType="TOPIC_CONFIGURED").result(timeout=30)
    command = {"command": "rotate", "secret": secret, "mode": "plan"}
    publisher.publish(topics["commands"], json.dumps(command).encode()).result(timeout=30)
    publisher.publish(
        topics["commands"],
        json.dumps({"name": secret}).encode(),
        eventType="SECRET_ROTATE",
        secretId=secret,
        dataFormat="JSON_API_V1",
    ).result(timeout=30)

    wait_for(lambda: len(receiver.pushed) >= 2, timeout=60, what="the command and SECRET_ROTATE pushes")
    time.sleep(3)  # time for a TOPIC_CONFIGURED push (or a redelivery) to show up, if it were coming
    seen = [
        (
            m.get("attributes", {}).get("eventType"),
            base64.b64decode(m.get("data", "")) if m.get("data") else b"",
        )
        for m in receiver.pushed
    ]
    assert sorted(event or "command" for event, _ in seen) == ["SECRET_ROTATE", "command"], seen
    assert json.loads(next(data for event, data in seen if event is None)) == command

    dead = subscriber.pull(
        subscription=stack._subscription_names()["dead_letter"], max_messages=10, timeout=10
    )
    assert list(dead.received_messages) == []
