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
import traceback
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

# What is redacted: secret MATERIAL, never the names of secrets. An auditor reads these logs to see
# which secret was touched (``secret``, ``secret_id``, ``secret_name`` holding projects/P/secrets/S),
# so a key is redacted for what its value IS, not for mentioning "secret":
# - value-bearing keys: the key's head noun names material (``password``, ``token``,
#   ``authorization``, ``credentials``, ``cookie``) or its last two words do (``private_key``,
#   ``client_secret``, ``api_key``, ``consumer_key``, ``private_key_data``, ``secret_value``), in
#   snake, kebab or camel case; ``data`` under a ``payload`` (a Secret Manager version), and a
#   ``payload`` that is not a mapping. Identifiers of material (``private_key_id``, ``token_count``,
#   ``key``, ``secret``...) are not material and stay visible.
# - bytes values: raw bytes in a log line are material more often than not.
# - value patterns, in every string, message, exception text and stack trace: PEM private key
#   blocks, ``"private_key": "..."``-style pairs for the keys above (JSON, Python repr, key=value),
#   bearer/basic authorization, OAuth access tokens, JWTs, GitHub and Google API tokens, URL passwords.
_MATERIAL_WORDS = frozenset(
    {
        "password",
        "passwd",
        "passphrase",
        "token",
        "authorization",
        "credentials",
        "cookie",
        "apikey",
        "privatekey",
    }
)
_MATERIAL_PAIRS = frozenset(
    {
        ("private", "key"),
        ("api", "key"),
        ("client", "secret"),
        ("consumer", "key"),
        ("consumer", "secret"),
        ("signing", "key"),
        ("secret", "key"),
        ("shared", "secret"),
        ("webhook", "secret"),
        ("token", "secret"),
        ("key", "data"),
        ("key", "json"),
        ("key", "material"),
        ("secret", "value"),
        ("secret", "data"),
        ("secret", "payload"),
        ("secret", "material"),
    }
)
# the same keys as they appear in text, in any case; matched as a suffix (github_token, x-api-key):
# no prefix is matched, so that a long run of word characters cannot make the search quadratic
_MATERIAL_KEY_TEXT = (
    r"(?:password|passwd|passphrase|token|private[_-]?key(?:[_-]?data)?|client[_-]?secret|api[_-]?key"
    r"|consumer[_-]?(?:key|secret)|secret[_-]?(?:value|data|key)|key[_-]?data)"
)
_REDACTED = "[REDACTED]"
_SECRET_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (
        re.compile(
            r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY[A-Z ]*-----.*?"
            r"(?:-----END [A-Z0-9 ]*PRIVATE KEY[A-Z ]*-----|\Z)",
            re.S,
        ),
        _REDACTED,
    ),
    (re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{8,}"), "Bearer [REDACTED]"),
    (re.compile(r"(?i)\bbasic\s+[A-Za-z0-9+/]{8,}={0,2}"), "Basic [REDACTED]"),
    # "key": "value" (JSON, also backslash-escaped inside another string), 'key': b'value' (repr), key=value
    (
        re.compile(
            rf'(?i)({_MATERIAL_KEY_TEXT}\\*["\']?\s*[:=]\s*b?)(\\*)(["\'])(?:(?!\2\3)(?:\\.|.))*\2\3',
            re.S,
        ),
        r"\1\2\3[REDACTED]\2\3",
    ),
    # a Secret Manager version in text: "payload": {"data": "..."}
    (
        re.compile(
            r'(?i)(payload\\*["\']?\s*[:=]\s*\{[^{}]*?\bdata\\*["\']?\s*[:=]\s*b?)(\\*)(["\'])'
            r"(?:(?!\2\3)(?:\\.|.))*\2\3",
            re.S,
        ),
        r"\1\2\3[REDACTED]\2\3",
    ),
    (
        re.compile(rf"(?i)({_MATERIAL_KEY_TEXT}\s*[:=]\s*)(?![\"'\\\[{{])[^\s&,;)}}\]]{{4,}}"),
        r"\1[REDACTED]",
    ),
    (re.compile(r"\bya29\.[A-Za-z0-9._-]+"), _REDACTED),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"), _REDACTED),
    (re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})"), _REDACTED),
    (re.compile(r"\bAIza[0-9A-Za-z_-]{30,}"), _REDACTED),
    (re.compile(r"(\b[a-z][a-z0-9+.-]{0,31}://[^/\s:@]{1,256}:)[^/\s@]{1,256}@"), r"\1[REDACTED]@"),
]
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_NOT_WORD = re.compile(r"[^a-z0-9]+")


def redact(text: str) -> str:
    """Mask credential-looking substrings (material, not the names of secrets)."""
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _words(key: str) -> tuple[str, ...]:
    return tuple(w for w in _NOT_WORD.split(_CAMEL_BOUNDARY.sub("_", key).lower()) if w)


def _is_material(key: str, value: Any, parent: str) -> bool:
    words = _words(key)
    if not words:
        return False
    if words[-1] in _MATERIAL_WORDS or words[-2:] in _MATERIAL_PAIRS:
        return True
    if words == ("data",) and _words(parent)[-1:] == ("payload",):
        return True  # a Secret Manager version: {"name": ..., "payload": {"data": ..., "dataCrc32c": ...}}
    return words == ("payload",) and not isinstance(value, Mapping)


def _scrub(value: Any, key: str = "", parent: str = "") -> Any:
    if key and not isinstance(value, bool | int | float | None) and _is_material(key, value, parent):
        return _REDACTED
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return f"[REDACTED {len(bytes(value))} bytes]"
    if isinstance(value, Mapping):
        return {str(k): _scrub(v, str(k), key) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_scrub(v, "", key) for v in value]
    if isinstance(value, BaseException):
        return redact(f"{type(value).__name__}: {value}")
    return value


class CloudLoggingFormatter(logging.Formatter):
    """Formats a record as one JSON object per line, whatever it holds (newlines are escaped).

    ``stack_traces``: put the formatted traceback of ``exc_info`` into ``stack_trace`` (which Cloud
    Error Reporting reads), redacted. Off for gatehouse's own loggers, which log errors they handled
    (type and message say enough); on for the framework loggers (Flask, werkzeug, gunicorn), whose
    exceptions nobody handled.
    """

    def __init__(self, project: str | None = None, *, stack_traces: bool = False) -> None:
        super().__init__()
        self.project = project
        self.stack_traces = stack_traces

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
            if self.stack_traces:
                payload["stack_trace"] = redact("".join(traceback.format_exception(*record.exc_info)))
        if record.stack_info and self.stack_traces:
            payload["stack_info"] = redact(record.stack_info)
        return json.dumps(payload, default=_as_text, sort_keys=False)


def _as_text(value: object) -> str:
    return redact(str(value))


def configure(level: int = logging.INFO, stream: TextIO | None = None, project: str | None = None) -> None:
    """Route the ``gatehouse`` logger to ``stream`` (stdout by default) as JSON lines; idempotent."""
    logger = logging.getLogger("gatehouse")
    logger.setLevel(level)
    logger.propagate = False
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(CloudLoggingFormatter(project))
    logger.handlers[:] = [handler]


# Loggers of the HTTP stack around the functions: Flask's app logger is named after the app
# (functions-framework names the app after the target), so the caller passes those names.
FRAMEWORK_LOGGERS = ("werkzeug", "gunicorn.error", "gunicorn.access", "py.warnings")


def configure_framework(
    app_loggers: tuple[str, ...] = (),
    *,
    stream: TextIO | None = None,
    project: str | None = None,
    level: int = logging.WARNING,
) -> None:
    """Make every other log record of the process one JSON line too, tracebacks in ``stack_trace``.

    The root logger gets one JSON handler (replacing any other), Python warnings are routed through
    logging, and the framework loggers (``FRAMEWORK_LOGGERS`` plus ``app_loggers``) lose their own
    plain-text handlers and propagate to it. Idempotent.
    """
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(CloudLoggingFormatter(project, stack_traces=True))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    if root.level == logging.NOTSET or root.level > level:
        root.setLevel(level)
    logging.captureWarnings(True)
    for name in (*FRAMEWORK_LOGGERS, *app_loggers):
        framework = logging.getLogger(name)
        framework.handlers[:] = []
        framework.propagate = True


def json_formatted(handler: logging.Handler, project: str | None = None) -> None:
    """Switch a handler someone else installed (gunicorn's) to JSON lines with stack traces."""
    if not isinstance(handler.formatter, CloudLoggingFormatter):
        handler.setFormatter(CloudLoggingFormatter(project, stack_traces=True))


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
