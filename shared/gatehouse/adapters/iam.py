"""IAM v1 service-account keys (``KeyAdmin``) over REST with google-auth's AuthorizedSession.

Why not ``google.cloud.iam_admin_v1.IAMClient``: google-cloud-iam 2.27 ships only gRPC transports
for it (``IAMClient(transport="rest")`` raises KeyError 'rest'), and the local stand-ins speak the
REST wire format of the discovery document, as Google's REST endpoint does. The paths and fields
below are those of ``iam.v1`` (``projects.serviceAccounts.keys``), so this runs the same code
against Google and against ``shared/gatehouse/local/standins/iam.py``.

- ``privateKeyData`` is base64 of the JSON key file over REST; the gRPC client hands out the raw
  file. :func:`key_file_bytes` accepts both, so swapping transports cannot double-decode.
- Key names use the account's own project (``projects/P/serviceAccounts/E/keys/K``), not the ``-``
  wildcard: with ``-`` IAM answers 403 instead of 404 for a key that is gone, and the executor
  relies on 404 to treat "already deleted" as done.
- Creating a key is not retried in-process except on 429 (rejected before any effect): after a lost
  5xx response the key may exist, and a blind retry would burn one of the account's 10 key slots.
  The next run finds such a key as an orphan and removes it.
- Key files never reach a log: google-auth logs response bodies at DEBUG (``privateKeyData``), so
  that logger is pinned to INFO, and errors never carry response bodies.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from google.auth.credentials import Credentials

from gatehouse.adapters.http import GoogleRest
from gatehouse.errors import PermanentError
from gatehouse.rotation.material import Material
from gatehouse.rotation.ports import KeyInfo, NewKey
from gatehouse.rotation.target import account_project


def key_file_bytes(data: str | bytes) -> bytes:
    """The JSON key file from ``privateKeyData``: base64 text (REST) or the raw file (gRPC)."""
    raw = data.encode("ascii") if isinstance(data, str) else bytes(data)
    if raw.lstrip().startswith(b"{"):
        return raw
    try:
        decoded = base64.b64decode(raw, validate=True)
    except binascii.Error:
        raise PermanentError("privateKeyData is neither base64 nor a JSON key file") from None
    if not decoded.lstrip().startswith(b"{"):
        raise PermanentError("privateKeyData is not a JSON key file (only TYPE_GOOGLE_CREDENTIALS_FILE)")
    return decoded


def _time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _key_info(doc: Mapping[str, Any]) -> KeyInfo:
    valid_before = _time(doc.get("validBeforeTime"))
    if valid_before is not None and valid_before.year >= 9999:
        valid_before = None  # IAM's "no expiry"
    return KeyInfo(
        key_id=str(doc.get("name", "")).rsplit("/", 1)[-1],
        valid_after=_time(doc.get("validAfterTime")) or datetime.fromtimestamp(0, UTC),
        valid_before=valid_before,
        disabled=bool(doc.get("disabled", False)),
    )


class IamKeyAdmin:
    """The ``gatehouse.rotation.ports.KeyAdmin`` over IAM v1 REST."""

    def __init__(
        self,
        *,
        endpoint: str = "https://iam.googleapis.com",
        credentials: Credentials | None = None,
        anonymous: bool = False,
        retry_attempts: int = 5,
        retry_max_wait: float = 20.0,
        timeout: float = 30.0,
    ) -> None:
        self.rest = GoogleRest(
            endpoint,
            credentials=credentials,
            anonymous=anonymous,
            retry_attempts=retry_attempts,
            retry_max_wait=retry_max_wait,
            timeout=timeout,
        )

    @staticmethod
    def account_name(email: str) -> str:
        """``projects/P/serviceAccounts/E`` with the account's own project (``-`` if unknown)."""
        try:
            project = account_project(email)
        except ValueError:
            project = "-"
        return f"projects/{project}/serviceAccounts/{email}"

    def _path(self, email: str, key_id: str | None = None) -> str:
        path = "/v1/" + quote(self.account_name(email), safe="/@")
        return f"{path}/keys/{quote(key_id, safe='')}" if key_id else path

    def list_service_account_keys(self, email: str) -> list[KeyInfo]:
        doc = self.rest.request(
            "GET", self._path(email) + "/keys", f"list keys of {email}", params={"keyTypes": "USER_MANAGED"}
        )
        return [_key_info(k) for k in doc.get("keys") or [] if isinstance(k, dict)]

    def create_service_account_key(self, email: str) -> NewKey:
        doc = self.rest.request(
            "POST",
            self._path(email) + "/keys",
            f"create a key for {email}",
            idempotent=False,
            json={"privateKeyType": "TYPE_GOOGLE_CREDENTIALS_FILE", "keyAlgorithm": "KEY_ALG_RSA_2048"},
        )
        data = doc.pop("privateKeyData", None)
        key_id = str(doc.get("name", "")).rsplit("/", 1)[-1]
        if not data or not key_id:
            raise PermanentError(f"IAM answered CreateServiceAccountKey for {email} without a key file")
        return NewKey(key_id=key_id, private_key_data=Material(key_file_bytes(data)))

    def disable_service_account_key(self, email: str, key_id: str) -> None:
        self.rest.request("POST", self._path(email, key_id) + ":disable", f"disable key {key_id}", json={})

    def enable_service_account_key(self, email: str, key_id: str) -> None:
        self.rest.request("POST", self._path(email, key_id) + ":enable", f"enable key {key_id}", json={})

    def delete_service_account_key(self, email: str, key_id: str) -> None:
        self.rest.request("DELETE", self._path(email, key_id), f"delete key {key_id}")

    def get_public_key(self, email: str, key_id: str) -> bytes | None:
        doc = self.rest.request(
            "GET",
            self._path(email, key_id),
            f"get the public key of {key_id}",
            params={"publicKeyType": "TYPE_X509_PEM_FILE"},
        )
        data = doc.get("publicKeyData")
        if not isinstance(data, str) or not data:
            return None
        try:
            return base64.b64decode(data, validate=True)
        except binascii.Error:
            raise PermanentError(f"IAM's publicKeyData for {key_id} is not base64") from None

    def close(self) -> None:
        self.rest.close()
