"""Raw HTTP bodies at the functions' endpoint, through the real functions-framework app.

Bodies that functions-framework cannot turn into a CloudEvent are answered with a 4xx (never a 500,
which a push subscription would redeliver); bodies it can are acknowledged by gatehouse as bad input;
exceptions raised inside gatehouse still answer 500. Whatever happens, every line the process logs
is one JSON object. See the docstring of gatehouse.entrypoints.functions.
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import functions_framework
import pytest
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from gatehouse.logging import configure

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO / "functions" / "main.py"
PUBSUB_TYPE = "google.cloud.pubsub.topic.v1.messagePublished"
BINARY = {
    "ce-specversion": "1.0",
    "ce-id": "ev-1",
    "ce-source": "//pubsub.googleapis.com/projects/p/topics/t",
    "ce-type": PUBSUB_TYPE,
    "Content-Type": "application/json",
}
STRUCTURED = {"Content-Type": "application/cloudevents+json"}
PLAIN = {"Content-Type": "application/json"}
DEEP_ARRAY = b"[" * 100_000 + b"]" * 100_000
DEEP_OBJECT = b'{"a":' * 100_000 + b"1" + b"}" * 100_000
NOT_JSON = b"\xff\xfe hunter2-echo, not JSON"
OVERSIZED = 16 * 1024 * 1024 + 1  # one byte over MAX_BODY_BYTES
LOGGERS = (
    "",
    "gatehouse",
    "werkzeug",
    "gunicorn.error",
    "gunicorn.access",
    "py.warnings",
    "on_command",
    "on_run_event",
)


def json_objects(text: str) -> list[dict[str, Any]]:
    """Every non-empty line as a JSON object; fails naming the lines that are not."""
    lines = [line for line in text.splitlines() if line.strip()]
    bad = []
    for line in lines:
        try:
            ok = isinstance(json.loads(line), dict)
        except ValueError:
            ok = False
        if not ok:
            bad.append(line[:200])
    assert not bad, f"{len(bad)} log lines are not JSON objects: {bad[:5]}"
    return [json.loads(line) for line in lines]


def push_envelope(data: bytes) -> bytes:
    message = {
        "data": base64.b64encode(data).decode(),
        "messageId": "7",
        "publishTime": "2025-03-14T10:00:00Z",
    }
    return json.dumps({"message": message, "subscription": "projects/p/subscriptions/s"}).encode()


class Output:
    """Everything the test wrote to stdout and stderr (pytest's capsys: it survives the setup phase)."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys
        self.seen = ""

    def getvalue(self) -> str:
        out, err = self.capsys.readouterr()
        self.seen += out + err
        return self.seen


@pytest.fixture
def output(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Output]:
    """stdout and stderr of the test, with the logging setup restored afterwards."""
    # create_app writes these into the process environment
    monkeypatch.setenv("FUNCTION_TARGET", "")
    monkeypatch.setenv("FUNCTION_SIGNATURE_TYPE", "cloudevent")
    saved = {name: logging.getLogger(name) for name in LOGGERS}
    state = {name: (log.handlers[:], log.propagate, log.level) for name, log in saved.items()}
    try:
        yield Output(capsys)
    finally:
        for name, log in saved.items():
            log.handlers[:], log.propagate, level = state[name]
            log.setLevel(level)
        logging.captureWarnings(False)


class Function:
    """The functions-framework app serving ``target``, created on first use.

    Created in the test's call phase: pytest replaces the captured stdout between phases, and the
    app's log handlers keep the stream they were created with.
    """

    def __init__(self, target: str) -> None:
        self.target = target
        self.client: FlaskClient | None = None

    def post(self, path: str, *, data: bytes, headers: dict[str, str]) -> TestResponse:
        if self.client is None:
            self.client = functions_framework.create_app(self.target, str(SOURCE), "cloudevent").test_client()
            configure()  # gatehouse's logger may have been configured by an earlier test, to another stdout
        return self.client.post(path, data=data, headers=headers)


@pytest.fixture(params=["on_run_event", "on_command"])
def client(request: pytest.FixtureRequest, output: Output) -> Function:
    return Function(request.param)


def test_json_array_body_is_answered_not_crashed(client: Function, output: Output) -> None:
    # binary mode: functions-framework makes a CloudEvent whose data is the array; gatehouse acks it
    assert client.post("/", data=b"[1, 2, 3]", headers=BINARY).status_code == 200
    # structured mode or no CloudEvent headers: functions-framework cannot read it
    for headers in (STRUCTURED, PLAIN):
        response = client.post("/projects/p/topics/t", data=b"[1, 2, 3]", headers=headers)
        assert response.status_code == 400, headers
        assert response.get_json() == {"error": "not a CloudEvent (TypeError)"}
    entries = json_objects(output.getvalue())
    assert [e["message"] for e in entries if e["severity"] == "WARNING"] == [
        "request rejected before decoding"
    ] * 2
    assert any(e["message"] == "message rejected: bad input" for e in entries)


@pytest.mark.parametrize("body", [DEEP_ARRAY, DEEP_OBJECT], ids=["array", "object"])
def test_json_nested_100000_deep_is_a_400(client: Function, output: Output, body: bytes) -> None:
    for headers in (BINARY, STRUCTURED, PLAIN):
        response = client.post("/", data=body, headers=headers)
        assert response.status_code == 400, headers
    rejected = [
        e for e in json_objects(output.getvalue()) if e["message"] == "request rejected before decoding"
    ]
    assert len(rejected) == 3 and all("RecursionError" in str(e["reason"]) for e in rejected)


def test_non_json_body_is_answered_without_echoing_it(client: Function, output: Output) -> None:
    # binary mode: gatehouse gets the bytes, finds they are not UTF-8 JSON and acks them
    assert client.post("/", data=NOT_JSON, headers=BINARY).status_code == 200
    for headers in (STRUCTURED, PLAIN, {"Content-Type": "text/plain"}, {}):
        response = client.post("/", data=NOT_JSON, headers=headers)
        assert 400 <= response.status_code < 500, headers
        assert b"hunter2-echo" not in response.data
    json_objects(output.getvalue())


def test_oversized_body_is_a_413_but_the_largest_pubsub_push_is_acknowledged(
    client: Function, output: Output
) -> None:
    too_big = b'"' + b"a" * (OVERSIZED - 2) + b'"'
    for headers in (BINARY, STRUCTURED):
        response = client.post("/", data=too_big, headers=headers)
        assert response.status_code == 413, headers
        assert response.get_json() == {"error": "Request Entity Too Large"}
    # Pub/Sub's largest message (10 MB) in its push envelope fits: gatehouse rejects it as bad input
    # and acknowledges it, so a 413 can never make Pub/Sub redeliver in a loop
    largest = push_envelope(b"x" * 10_000_000)
    assert len(largest) < OVERSIZED
    assert client.post("/projects/p/topics/t", data=largest, headers=PLAIN).status_code == 200
    entries = json_objects(output.getvalue())
    assert [e.get("status") for e in entries if e["severity"] == "WARNING"] == [413, 413]
    assert "over the 1 MiB limit" in str([e.get("error") for e in entries])


def test_exception_inside_gatehouse_is_still_a_500_logged_as_one_json_line(
    client: Function, output: Output, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(_: object) -> None:
        raise RuntimeError("unexpected state; password=hunter2-in-trace")

    monkeypatch.setattr(sys.modules["gatehouse.entrypoints.functions"], "_decode", crash)
    response = client.post("/", data=b'{"message": {}}', headers=BINARY)
    assert response.status_code == 500  # Pub/Sub redelivers: the failure may be transient
    (entry,) = json_objects(output.getvalue())
    assert entry["severity"] == "ERROR" and entry["message"] == "Exception on / [POST]"
    assert str(entry["stack_trace"]).startswith("Traceback (most recent call last):")
    assert "RuntimeError: unexpected state" in str(entry["stack_trace"])
    assert "hunter2" not in output.getvalue()


def test_gunicorn_error_log_is_taken_over_in_the_worker(client: Function, output: Output) -> None:
    from gunicorn.config import Config
    from gunicorn.glogging import Logger

    client.post("/", data=b"[]", headers=BINARY)  # create_app, as the arbiter does before it forks
    gunicorn_log = Logger(Config())  # what the arbiter sets up after the app is created
    client.post("/", data=b"[]", headers=BINARY)  # a request in the worker
    try:
        raise OSError("socket closed")
    except OSError:
        gunicorn_log.exception("Error handling request %s", "/")
    entry = json_objects(output.getvalue())[-1]
    assert entry["logger"] == "gunicorn.error" and "OSError: socket closed" in str(entry["stack_trace"])


# -------------------------------------------------------------------------- a real server process


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _post(port: int, body: bytes, headers: dict[str, str]) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", "/projects/p/topics/t", body=body, headers=headers)
        return conn.getresponse().status
    finally:
        conn.close()


def _declare_oversized(port: int) -> int:
    """Send only the headers of an oversized request: the answer must come without the body being read."""
    head = (
        f"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nce-specversion: 1.0\r\n"
        f"ce-id: 1\r\nce-source: //x\r\nce-type: {PUBSUB_TYPE}\r\nContent-Length: {OVERSIZED}\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head.encode() + b"a" * 1024)
        status_line = sock.makefile("rb").readline().decode()
    return int(status_line.split()[1])


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    port = _free_port()
    log_path = tmp_path / "function.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "shared"), str(REPO)]), "WORKERS": "1"}
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [
                *(
                    sys.executable,
                    "-m",
                    "functions_framework",
                    "--target",
                    "on_command",
                    "--source",
                    str(SOURCE),
                ),
                *("--signature-type", "cloudevent", "--host", "127.0.0.1", "--port", str(port)),
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=tmp_path,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"functions-framework did not start: {log_path.read_text()}") from None
                time.sleep(0.1)
        yield port, log_path
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_real_functions_framework_process_answers_bad_bodies_and_logs_json_lines(
    server: tuple[int, Path],
) -> None:
    port, log_path = server
    assert _post(port, b"[1, 2, 3]", STRUCTURED) == 400
    assert _post(port, b"[1, 2, 3]", BINARY) == 200
    assert _post(port, DEEP_ARRAY, BINARY) == 400
    assert _post(port, DEEP_OBJECT, STRUCTURED) == 400
    assert _post(port, NOT_JSON, {"Content-Type": "text/plain"}) == 400
    assert _declare_oversized(port) == 413
    assert _post(port, b"[]", BINARY) == 200  # still serving
    time.sleep(0.5)
    entries = json_objects(log_path.read_text())
    assert sum(e["message"] == "request rejected before decoding" for e in entries) == 5
