"""A real OAuth token exchange with a new key (``TokenExchange``); off by default.

The offline checks (the file parses, names the account and key, signs, and the signature verifies
against IAM's public key) prove the stored key is the one IAM registered. Only Google's token
endpoint proves Google accepts it, so with ``GATEHOUSE_ROTATION_TOKEN_EXCHANGE`` on the executor
also mints an access token: ``service_account.Credentials.from_service_account_info(...).refresh``.

A new key is not usable everywhere at once (IAM: "you might need to wait for 60 seconds or more"),
and until it is the endpoint answers ``invalid_grant`` ("Invalid JWT Signature."). So
``invalid_grant`` is retried with backoff for ``propagation_wait`` seconds and only then means
rejected (``CredentialRejectedError``). Errors about the assertion's time window (``iat``/``exp``)
are this machine's clock, not the key: ``TransientError``. Network failures and 5xx/``retryable``
answers are ``TransientError``. Messages carry the OAuth ``error`` and description only: no key,
assertion or token, and no chained library exception (google-auth keeps the response on it).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from google.auth import exceptions as auth_exceptions
from google.auth.transport import Request
from google.oauth2 import service_account

from gatehouse.adapters.http import quiet_payload_loggers
from gatehouse.errors import TransientError
from gatehouse.logging import redact
from gatehouse.rotation.material import Material
from gatehouse.rotation.ports import CredentialRejectedError

SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
_CLOCK_WORDS = ("timeframe", "iat and exp", "clock skew")


def _oauth_error(exc: auth_exceptions.RefreshError) -> tuple[str, str]:
    """(``error``, ``error_description``) of a token endpoint refusal."""
    data = exc.args[1] if len(exc.args) > 1 else None
    if isinstance(data, Mapping):
        return str(data.get("error") or ""), str(data.get("error_description") or "")
    text = str(exc.args[0]) if exc.args else ""
    code, _, description = text.partition(":")
    return code.strip(), description.strip()


class GoogleTokenExchange:
    """The ``gatehouse.rotation.ports.TokenExchange`` against Google's OAuth token endpoint."""

    def __init__(
        self,
        *,
        scopes: Sequence[str] = SCOPES,
        request: Request | None = None,
        token_uri: str | None = None,
        propagation_wait: float = 120.0,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if request is None:
            from google.auth.transport.requests import Request as RequestsRequest

            request = RequestsRequest()
        quiet_payload_loggers()  # google-auth logs token request/response bodies at DEBUG
        self.scopes = tuple(scopes)
        self.request = request
        self.token_uri = token_uri
        self.propagation_wait = propagation_wait
        self.sleep = sleep
        self.monotonic = monotonic

    def _credentials(self, key_file: Material) -> service_account.Credentials:
        info: Any = None
        try:
            info = json.loads(key_file.reveal())
            if not isinstance(info, dict):
                raise ValueError("not an object")
            if self.token_uri:
                info = {**info, "token_uri": self.token_uri}
            return service_account.Credentials.from_service_account_info(info, scopes=self.scopes)  # type: ignore[no-untyped-call,no-any-return]
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            info = None  # a traceback keeps this frame's locals
        raise CredentialRejectedError("google-auth cannot load the key file for a token exchange")

    def exchange(self, key_file: Material) -> None:
        credentials = self._credentials(key_file)
        deadline = self.monotonic() + self.propagation_wait
        delay = 2.0
        while True:
            try:
                credentials.refresh(self.request)  # type: ignore[no-untyped-call]
                return
            except auth_exceptions.RefreshError as exc:
                code, description = _oauth_error(exc)
                what = redact(f"{code}: {description}" if description else code or "refused")
                if exc.retryable:
                    raise TransientError(f"token endpoint unavailable: {what}") from None
                if code == "invalid_grant" and any(w in description.lower() for w in _CLOCK_WORDS):
                    raise TransientError(
                        f"token exchange refused for the assertion's time window ({what}): "
                        "check this machine's clock"
                    ) from None
                if code == "invalid_grant" and self.monotonic() + delay <= deadline:
                    self.sleep(delay)  # the key may not have reached every token server yet
                    delay = min(delay * 2, 30.0)
                    continue
                waited = (
                    f" after waiting {self.propagation_wait:.0f}s for propagation"
                    if code == "invalid_grant"
                    else ""
                )
                raise CredentialRejectedError(f"the token endpoint refused the key{waited}: {what}") from None
            except auth_exceptions.TransportError as exc:
                raise TransientError(f"token endpoint unreachable: {type(exc).__name__}") from None
