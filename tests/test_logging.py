"""Structured logs: Cloud Logging's JSON shape, one correlation id per event, no credential ever."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator

import pytest

from gatehouse.logging import bound, configure, event, get_logger, redact

PRIVATE_KEY = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n"


@pytest.fixture
def lines() -> io.StringIO:
    stream = io.StringIO()
    configure(stream=stream, project="gh-proj")
    return stream


def parsed(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_cloud_logging_fields_and_bound_context(lines: io.StringIO) -> None:
    log = get_logger("t")
    with bound(correlation_id="c-1", component="on_run_event", trace="abc123"):
        event(log, "service registered", proxy="orders-1234", revision=3)
    (entry,) = parsed(lines)
    assert entry["severity"] == "INFO" and entry["message"] == "service registered"
    assert entry["logging.googleapis.com/trace"] == "projects/gh-proj/traces/abc123"
    assert entry["logging.googleapis.com/labels"] == {"correlation_id": "c-1", "component": "on_run_event"}
    assert entry["proxy"] == "orders-1234" and entry["revision"] == 3 and entry["correlation_id"] == "c-1"


def test_context_does_not_leak_between_threads(lines: io.StringIO) -> None:
    log = get_logger("t")

    def other() -> None:
        event(log, "from another thread")

    with bound(correlation_id="only-here"):
        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
    assert "correlation_id" not in parsed(lines)[0]


@pytest.mark.parametrize(
    ("fields", "secret"),
    [
        ({"key_file": {"private_key": PRIVATE_KEY, "client_email": "a@b.iam.gserviceaccount.com"}}, "MIIEvQ"),
        ({"headers": {"Authorization": "Bearer ya29.a0AfH6SMBx-secret-token"}}, "ya29"),
        ({"token": "ghp_0123456789abcdef"}, "ghp_0123"),
        ({"detail": "call failed: Authorization: Bearer abcdefghijklmnopqrstuv"}, "abcdefghijkl"),
        ({"jwt": "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJl"}, "eyJzdWIi"),
    ],
)
def test_credentials_never_reach_a_log_line(
    lines: io.StringIO, fields: dict[str, object], secret: str
) -> None:
    event(get_logger("t"), "something happened", **fields)
    get_logger("t").error("message with %s", json.dumps(fields))
    text = lines.getvalue()
    assert secret not in text and "REDACTED" in text


def test_exceptions_are_logged_as_type_and_message_without_traceback(lines: io.StringIO) -> None:
    try:
        raise RuntimeError(f"boom with {PRIVATE_KEY}")
    except RuntimeError:
        get_logger("t").exception("failed")
    (entry,) = parsed(lines)
    assert entry["severity"] == "ERROR" and entry["error"]["type"] == "RuntimeError"  # type: ignore[index]
    assert "MIIEvQ" not in lines.getvalue() and "Traceback" not in lines.getvalue()


def test_identifiers_that_merely_mention_secrets_are_kept(lines: io.StringIO) -> None:
    event(get_logger("t"), "rotated", secret_name="projects/1/secrets/s", token_count=3)
    (entry,) = parsed(lines)
    assert entry["secret_name"] == "projects/1/secrets/s" and entry["token_count"] == 3
    assert redact("nothing to hide here") == "nothing to hide here"


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    yield
    logging.getLogger("gatehouse").handlers.clear()
