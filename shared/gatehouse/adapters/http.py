"""What every REST adapter shares: a client-side rate limit, one retry policy, error mapping.

Retries use tenacity (exponential backoff with jitter, ``Retry-After`` honoured); only errors the
vocabulary calls transient are retried, and only a few times: Pub/Sub and Cloud Run retry the rest.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import google.auth
import requests
from google.auth.credentials import AnonymousCredentials, Credentials
from google.auth.transport.requests import AuthorizedSession
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from gatehouse.errors import (
    ConflictError,
    NotFoundError,
    PermanentError,
    TransientError,
    is_transient,
    is_transient_status,
)
from gatehouse.logging import event, get_logger

T = TypeVar("T")
_log = get_logger("http")


class RateLimiter:
    """Token bucket shared by all threads of one process: at most ``per_minute`` calls a minute,
    in bursts of at most ``burst``."""

    def __init__(
        self,
        per_minute: int,
        burst: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = per_minute / 60.0
        self.capacity = float(burst if burst is not None else max(1, per_minute // 60))
        self.tokens = self.capacity
        self.clock = clock
        self.sleep = sleep
        self.updated = clock()
        self.lock = threading.Lock()

    def acquire(self) -> float:
        """Take one token, sleeping until one is available; returns the seconds waited."""
        with self.lock:
            now = self.clock()
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
            self.updated = now
            self.tokens -= 1.0
            wait = 0.0 if self.tokens >= 0 else -self.tokens / self.rate
        if wait > 0:
            self.sleep(wait)
        return wait


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # HTTP-date form: fall back to our own backoff


def error_from_response(response: requests.Response, what: str) -> Exception:
    """Map a non-2xx REST response (google.rpc.Status body) onto the error vocabulary."""
    status = response.status_code
    message, reason = response.reason or "", None
    try:
        body = response.json()
        err = body.get("error", {}) if isinstance(body, dict) else {}
        if isinstance(err, dict):
            message = str(err.get("message") or message)
            reason = err.get("status")
            for detail in err.get("details") or []:
                for violation in (detail.get("violations") or []) if isinstance(detail, dict) else []:
                    if isinstance(violation, dict) and violation.get("description"):
                        message += f"; {violation.get('type', '')}: {violation['description']}"
    except (ValueError, json.JSONDecodeError):
        pass
    text = f"{what}: HTTP {status} {reason or ''} {message}".strip()
    if is_transient_status(status):
        return TransientError(
            text, status=status, retry_after=_retry_after(response.headers.get("Retry-After"))
        )
    if status == 404:
        return NotFoundError(text, status=status, reason=reason)
    if status == 409:
        return ConflictError(text, status=status, reason=reason)
    return PermanentError(text, status=status, reason=reason)


def _wait(base: Callable[[RetryCallState], float], cap: float) -> Callable[[RetryCallState], float]:
    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        backoff = base(state)
        if isinstance(exc, TransientError) and exc.retry_after is not None:
            return min(cap, max(backoff, exc.retry_after))
        return backoff

    return wait


def retrying(attempts: int, max_wait: float, initial: float = 0.2) -> Retrying:
    """A tenacity policy: transient errors only, exponential backoff with jitter, Retry-After wins."""

    def log_retry(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        event(
            _log,
            "transient failure; will retry",
            level=20,
            attempt=state.attempt_number,
            attempts=attempts,
            error=str(exc),
        )

    return Retrying(
        stop=stop_after_attempt(attempts),
        wait=_wait(wait_exponential_jitter(multiplier=initial, max=max_wait, jitter=initial), max_wait),
        retry=retry_if_exception(is_transient),
        before_sleep=log_retry,
        reraise=True,
    )


def transport_error(exc: requests.RequestException, what: str) -> TransientError:
    """Connection errors and timeouts are transient."""
    return TransientError(f"{what}: {type(exc).__name__}: {exc}")


def json_or_empty(response: requests.Response) -> Any:
    if not response.content:
        return {}
    try:
        return response.json()
    except ValueError as exc:
        raise PermanentError(f"expected JSON from {response.url}, got {response.content[:80]!r}") from exc


def retry_on_429(attempts: int, max_wait: float) -> Retrying:
    """Retries for calls that create something: only 429 is known to have had no effect (after a
    lost 5xx answer the thing may exist, and a blind retry would make a second one)."""
    return Retrying(
        stop=stop_after_attempt(attempts),
        wait=wait_exponential_jitter(multiplier=0.2, max=max_wait, jitter=0.2),
        retry=retry_if_exception(lambda e: isinstance(e, TransientError) and e.status == 429),
        reraise=True,
    )


# loggers that print HTTP bodies at DEBUG; bodies can hold key files and secret payloads
PAYLOAD_LOGGERS = ("google.auth.transport.requests", "google.cloud.secretmanager_v1")


def quiet_payload_loggers(names: tuple[str, ...] = PAYLOAD_LOGGERS) -> None:
    """Keep libraries that log request/response bodies at DEBUG from ever doing so."""
    for name in names:
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET or logger.level < logging.INFO:
            logger.setLevel(logging.INFO)


class GoogleRest:
    """A Google REST API that no REST-capable client library covers (Apigee, IAM keys, Org Policy),
    through google-auth's AuthorizedSession: application default credentials (anonymous ones for the
    local stack), an optional client-side rate limit, transient errors retried, the rest mapped onto
    the error vocabulary without response bodies."""

    SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)

    def __init__(
        self,
        base: str,
        *,
        credentials: Credentials | None = None,
        anonymous: bool = False,
        limiter: RateLimiter | None = None,
        retry_attempts: int = 5,
        retry_max_wait: float = 20.0,
        timeout: float = 30.0,
    ) -> None:
        if credentials is None:
            if anonymous:
                credentials = AnonymousCredentials()  # type: ignore[no-untyped-call]
            else:
                credentials, _ = google.auth.default(scopes=self.SCOPES)
        quiet_payload_loggers()
        self.base = base.rstrip("/")
        self.session = AuthorizedSession(credentials)  # type: ignore[no-untyped-call]
        self.limiter = limiter
        self.retry = retrying(retry_attempts, retry_max_wait)
        self.retry_429 = retry_on_429(retry_attempts, retry_max_wait)
        self.timeout = timeout

    def response(
        self, method: str, path: str, what: str, *, idempotent: bool = True, **kwargs: Any
    ) -> requests.Response:
        """The 2xx response of ``method path``; ``idempotent=False`` retries only 429s."""

        def attempt() -> requests.Response:
            if self.limiter is not None:
                self.limiter.acquire()
            try:
                response: requests.Response = self.session.request(  # type: ignore[no-untyped-call]
                    method, self.base + path, timeout=self.timeout, **kwargs
                )
            except requests.RequestException as exc:
                raise transport_error(exc, what) from None
            if response.status_code >= 400:
                raise error_from_response(response, what)
            return response

        return (self.retry if idempotent else self.retry_429)(attempt)

    def request(self, method: str, path: str, what: str, *, idempotent: bool = True, **kwargs: Any) -> Any:
        """The JSON answer of ``method path``."""
        return json_or_empty(self.response(method, path, what, idempotent=idempotent, **kwargs))

    def close(self) -> None:
        self.session.close()  # type: ignore[no-untyped-call]
