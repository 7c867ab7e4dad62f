"""JSON-lines logs in Cloud Logging's structured format, one correlation id per event.

Cloud Run and Cloud Run functions parse a JSON object per stdout line: ``severity``, ``message``,
``logging.googleapis.com/trace`` and ``logging.googleapis.com/labels`` are lifted into the entry,
everything else lands in ``jsonPayload``. Context (correlation id, service, trace) is bound with
contextvars so that every line of one event carries it without threading it through calls.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import re
import sys
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, TextIO

_EMPTY: Mapping[str, Any] = MappingProxyType({})
_context: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar("gatehouse_log", default=_EMPTY)

_LEVEL_TO_SEVERITY = {
    logging.DEBUG: "DEBUG",
    logging.INFO: "INFO",
    logging.WARNING: "WARNING",
    logging.ERROR: "ERROR",
    logging.CRITICAL: "CRITICAL",
}

# Anything that looks like a credential is masked even if a caller slips it into a message.
_SECRET_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (
        re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)", re.S),
        "[REDACTED]",
    ),
    (re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{8,}"), "Bearer [REDACTED]"),
    (
        re.compile(
            r'(?i)("?(?:private_key|client_secret|password|token|secret|api[_-]?key)"?\s*[:=]\s*)"[^"]{4,}"'
        ),
        r'\1"[REDACTED]"',
    ),
    (re.compile(r"\bya29\.[A-Za-z0-9._-]+"), "[REDACTED]"),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"), "[REDACTED]"),
]
_SECRET_KEYS = re.compile(r"(?i)(private_key|secret|password|token|credential|authorization|api_?key)")


def redact(text: str) -> str:
    """Mask credential-looking substrings."""
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _scrub(value: Any, key: str = "") -> Any:
    if key and _SECRET_KEYS.search(key) and not key.endswith(("_id", "_name", "_ids", "_count")):
        return "[REDACTED]"
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {str(k): _scrub(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    return value


class CloudLoggingFormatter(logging.Formatter):
    """Formats a record as one JSON object per line."""

    def __init__(self, project: str | None = None) -> None:
        super().__init__()
        self.project = project

    def format(self, record: logging.LogRecord) -> str:
        ctx = dict(_context.get())
        payload: dict[str, Any] = {
            "severity": _LEVEL_TO_SEVERITY.get(record.levelno, "DEFAULT"),
            "message": redact(record.getMessage()),
            "time": datetime.fromtimestamp(record.created, UTC).isoformat().replace("+00:00", "Z"),
            "logger": record.name,
        }
        trace = ctx.pop("trace", None)
        if trace:
            payload["logging.googleapis.com/trace"] = (
                f"projects/{self.project}/traces/{trace}" if self.project and "/" not in trace else trace
            )
        labels = {k: str(v) for k, v in ctx.items() if k in ("correlation_id", "component")}
        if labels:
            payload["logging.googleapis.com/labels"] = labels
        payload.update(_scrub(ctx))
        fields = getattr(record, "fields", None)
        if isinstance(fields, Mapping):
            payload.update(_scrub(fields))
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            # The type and message only: tracebacks can carry local values and are noise for known errors.
            payload["error"] = {"type": type(exc).__name__, "message": redact(str(exc))}
        return json.dumps(payload, default=str, sort_keys=False)


def configure(level: int = logging.INFO, stream: TextIO | None = None, project: str | None = None) -> None:
    """Route the ``gatehouse`` logger to ``stream`` (stdout by default) as JSON lines; idempotent."""
    logger = logging.getLogger("gatehouse")
    logger.setLevel(level)
    logger.propagate = False
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(CloudLoggingFormatter(project))
    logger.handlers[:] = [handler]


def get_logger(name: str) -> logging.Logger:
    """A child of the ``gatehouse`` logger."""
    return logging.getLogger(f"gatehouse.{name}")


def new_correlation_id() -> str:
    return uuid.uuid4().hex[:16]


@contextlib.contextmanager
def bound(**fields: Any) -> Iterator[None]:
    """Bind fields to every log line written inside the block (contextvars: safe across threads)."""
    merged = {**_context.get(), **{k: v for k, v in fields.items() if v is not None}}
    token = _context.set(merged)
    try:
        yield
    finally:
        _context.reset(token)


def event(logger: logging.Logger, message: str, *, level: int = logging.INFO, **fields: Any) -> None:
    """Write one structured line: ``message`` plus ``fields`` in jsonPayload."""
    logger.log(level, message, extra={"fields": fields})
