"""Structured logs: Cloud Logging's JSON shape, one correlation id per event, no credential ever."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator

import pytest

from gatehouse.logging import bound, configure, configure_framework, event, get_logger, redact

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


SECRET = "projects/804214596321/secrets/apigee-orders-client"


def test_secret_names_stay_visible_for_auditors(lines: io.StringIO) -> None:
    log = get_logger("t")
    with bound(secret=SECRET):
        event(
            log,
            f"rotating secret={SECRET}",
            secret_id=SECRET,
            secret_name=SECRET,
            secret_version=f"{SECRET}/versions/3",
            secrets=[SECRET],
            target={
                "secret": SECRET,
                "key": "projects/p/serviceAccounts/sa@p.iam.gserviceaccount.com/keys/k1",
            },
        )
    log.error("failed: %s", json.dumps({"secret": SECRET}))
    log.error("failed: %r", {"secret": SECRET})
    first, *others = parsed(lines)
    assert first["secret"] == first["secret_id"] == first["secret_name"] == SECRET
    assert first["secret_version"] == f"{SECRET}/versions/3" and first["secrets"] == [SECRET]
    assert first["target"] == {
        "secret": SECRET,
        "key": "projects/p/serviceAccounts/sa@p.iam.gserviceaccount.com/keys/k1",
    }
    assert first["message"] == f"rotating secret={SECRET}"
    assert all(SECRET in str(entry["message"]) for entry in others)
    assert "REDACTED" not in lines.getvalue()


@pytest.mark.parametrize(
    ("fields", "material"),
    [
        # AccessSecretVersion: the version's name is kept, its payload data is not
        (
            {
                "version": {
                    "name": f"{SECRET}/versions/2",
                    "payload": {"data": "aHVudGVyMi1tYXRlcmlhbA==", "dataCrc32c": "7"},
                }
            },
            "aHVudGVyMi",
        ),
        ({"payload": "hunter2-material"}, "hunter2"),
        (
            {"app": {"name": "orders-app", "keys": [{"consumerKey": "ck-0123456789", "status": "approved"}]}},
            "ck-0123456789",
        ),
        (
            {
                "key": {
                    "name": "keys/k1",
                    "privateKeyData": "ZXlKMGVYQmxJam9pYzJWeWRtbGpaVjloWTJOdmRXNTBJbjA=",
                }
            },
            "ZXlKMGVY",
        ),
        ({"material": b"hunter2-bytes"}, "hunter2"),
        ({"detail": "login with password=hunter2-plain failed"}, "hunter2"),
        ({"detail": "config {'password': 'hunter2-repr', 'secret': 'projects/p/secrets/s'}"}, "hunter2"),
        ({"detail": 'body {"key": "{\\"private_key\\": \\"MIIEvQ-escaped\\"}"}'}, "MIIEvQ"),
        ({"detail": "GET https://deployer:hunter2-url@example.com/x"}, "hunter2"),
        ({"detail": "Authorization: Basic ZGVwbG95ZXI6aHVudGVyMg=="}, "ZGVwbG95"),
        ({"detail": "token github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz rejected"}, "11ABCDEFG"),
    ],
)
def test_secret_material_is_redacted_nested_and_in_text(
    lines: io.StringIO, fields: dict[str, object], material: str
) -> None:
    event(get_logger("t"), "something happened", **fields)
    assert material not in lines.getvalue() and "REDACTED" in lines.getvalue()


def test_material_in_exception_text_is_redacted_but_names_kept(lines: io.StringIO) -> None:
    version = {
        "name": f"{SECRET}/versions/2",
        "payload": {"data": b"hunter2-material"},
        "password": "hunter2-pw",
    }
    try:
        raise RuntimeError(f"unexpected AccessSecretVersion response {version!r}")
    except RuntimeError as exc:
        get_logger("t").exception("rotation failed")
        event(get_logger("t"), "rotation failed", level=logging.ERROR, error=exc, secret=SECRET)
    text = lines.getvalue()
    assert "hunter2" not in text
    first, second = parsed(lines)
    assert f"{SECRET}/versions/2" in first["error"]["message"]  # type: ignore[index]
    assert f"{SECRET}/versions/2" in str(second["error"]) and second["secret"] == SECRET


def test_framework_records_are_one_json_line_with_a_redacted_stack_trace() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    flask_logger = logging.getLogger("on_command")
    flask_logger.addHandler(logging.StreamHandler(stream))  # a plain-text handler, as Flask adds
    try:
        configure_framework(("on_command",), stream=stream, project="gh-proj")
        try:
            raise ValueError(f"bad key\n{PRIVATE_KEY}")
        except ValueError:
            flask_logger.error("Exception on / [POST]", exc_info=True)
        logging.getLogger("werkzeug").warning("line one\nline two")
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
        logging.captureWarnings(False)
        flask_logger.handlers.clear()
    entries = parsed(stream)
    assert len(entries) == 2 and len(stream.getvalue().splitlines()) == 2
    crash, werkzeug = entries
    assert crash["severity"] == "ERROR" and crash["logger"] == "on_command"
    trace = str(crash["stack_trace"])
    assert trace.startswith("Traceback (most recent call last):") and "ValueError: bad key" in trace
    assert "MIIEvQ" not in stream.getvalue()
    assert werkzeug["message"] == "line one\nline two"


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    yield
    logging.getLogger("gatehouse").handlers.clear()
