"""What every adapter built on an official Google client library shares: building the client on
the REST transport (endpoint override and anonymous credentials for the local stack, the production
code path otherwise), and mapping google.api_core errors onto the gatehouse vocabulary.

Kept apart from the client modules so that an adapter which only needs the error mapping (Firestore,
Pub/Sub) does not import a heavy client library it never uses.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NoReturn, TypeVar

import requests
from google.api_core import exceptions as gexc
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials, Credentials
from tenacity import Retrying

from gatehouse.errors import ConflictError, NotFoundError, PermanentError, TransientError

T = TypeVar("T")
_TRANSIENT = (
    gexc.TooManyRequests,
    gexc.InternalServerError,
    gexc.BadGateway,
    gexc.ServiceUnavailable,
    gexc.GatewayTimeout,
    gexc.DeadlineExceeded,
    gexc.RetryError,
)


def map_google_error(exc: Exception, what: str) -> Exception:
    """google.api_core / transport exceptions -> the gatehouse vocabulary (others unchanged).
    Socket-level failures (an emulator or endpoint that is not answering) are transient too."""
    if isinstance(exc, (*_TRANSIENT, requests.RequestException, OSError)):
        return TransientError(f"{what}: {type(exc).__name__}: {exc}")
    if isinstance(exc, gexc.NotFound):
        return NotFoundError(f"{what}: not found", status=404)
    if isinstance(exc, gexc.Aborted | gexc.Conflict):
        return ConflictError(f"{what}: {exc}", status=409)
    if isinstance(exc, gexc.GoogleAPICallError):
        return PermanentError(f"{what}: {exc}", status=getattr(exc, "code", None))
    return exc


def raise_mapped(exc: Exception, what: str) -> NoReturn:
    """Re-raise ``exc`` in the gatehouse vocabulary (unchanged when it has no mapping)."""
    mapped = map_google_error(exc, what)
    if mapped is exc:
        raise exc
    raise mapped from exc


def rest_client(
    cls: Callable[..., T], *, endpoint: str | None, credentials: Credentials | None, anonymous: bool
) -> T:
    """An official client on the REST transport; ``endpoint`` may be ``http://127.0.0.1:PORT``."""
    options = ClientOptions(api_endpoint=endpoint) if endpoint else None
    if credentials is None and anonymous:
        credentials = AnonymousCredentials()  # type: ignore[no-untyped-call]
    return cls(credentials=credentials, transport="rest", client_options=options)


def call(
    retry: Retrying,
    what: str,
    fn: Callable[[], T],
    mapper: Callable[[Exception, str], Exception] = map_google_error,
    *,
    chain: bool = True,
) -> T:
    """Run ``fn`` under ``retry`` with its errors mapped (transient ones are retried).

    ``chain=False`` drops the library error entirely (no ``__cause__``, no ``__context__``): it holds
    the HTTP request and response, which for a secret payload is the material itself."""

    def attempt() -> T:
        try:
            return fn()
        except Exception as exc:
            mapped = mapper(exc, what)
            if mapped is exc:
                raise
            if chain:
                raise mapped from exc
            error = mapped
        raise error  # outside the handler, so no __context__ either

    return retry(attempt)
