"""Secret Manager v1 (``SecretStore``) through the official client, REST transport.

``SecretManagerServiceClient(transport="rest")`` with an endpoint override reaches the local
stand-in exactly as it reaches Google. Retries are ours (tenacity, transient errors only); the
client's own retry is switched off (``retry=None``) so one policy decides. AddSecretVersion is not
retried except on 429: after a lost 5xx answer the version may exist, and the executor, which
re-reads before every step, handles that better than a blind second version.

Errors. Both an etag precondition and a version in the wrong state come back as FAILED_PRECONDITION
(HTTP 400 over REST, where api_core raises ``BadRequest``; the status is read from the body). They
are told apart by the message: a message mentioning "etag" is a ``ConflictError`` (the caller
re-reads) and any other is ``PermanentError(reason="FAILED_PRECONDITION")``: the wrong-state
wording is Google's ("Secret Version [...] is in DISABLED state."), the etag wording is not
documented (the stand-in says "etag mismatch"; verify against the real API). ABORTED (409), which
some Google APIs use for etags, is a conflict too.

Material. Payloads travel as :class:`Material` only; errors raised around AddSecretVersion and
AccessSecretVersion carry no library exception (no ``__cause__``, no ``__context__``): it holds
the HTTP request and response. The client's REST transport and google-auth log bodies at DEBUG
(AddSecretVersion's request: the payload), so those loggers are pinned to INFO.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

import requests
from google.api_core import exceptions as gexc
from google.auth.credentials import Credentials
from google.cloud import secretmanager
from google.protobuf import field_mask_pb2
from tenacity import Retrying

from gatehouse.adapters.gapic import call, rest_client
from gatehouse.adapters.http import quiet_payload_loggers, retry_on_429, retrying
from gatehouse.errors import ConflictError, NotFoundError, PermanentError, TransientError
from gatehouse.rotation.material import Material
from gatehouse.rotation.ports import AccessedVersion, SecretInfo, VersionInfo, VersionState

T = TypeVar("T")
FAILED_PRECONDITION = "FAILED_PRECONDITION"
_TRANSIENT = (
    gexc.TooManyRequests,
    gexc.InternalServerError,
    gexc.BadGateway,
    gexc.ServiceUnavailable,
    gexc.GatewayTimeout,
    gexc.DeadlineExceeded,
    gexc.RetryError,
)


def _status_name(exc: gexc.GoogleAPICallError) -> str | None:
    """``google.rpc.Status.status`` of an error: from the REST body, or the gRPC code."""
    response = getattr(exc, "response", None)
    if isinstance(response, requests.Response):
        try:
            status = response.json().get("error", {}).get("status")
        except (ValueError, AttributeError):
            status = None
        if isinstance(status, str):
            return status
    code = getattr(exc, "grpc_status_code", None)
    return getattr(code, "name", None)


def _message(exc: Exception) -> str:
    return str(getattr(exc, "message", "") or exc)


def map_secret_error(exc: Exception, what: str) -> Exception:
    """google.api_core / transport exceptions -> the vocabulary (see the module docstring)."""
    if isinstance(exc, requests.RequestException):
        return TransientError(f"{what}: {type(exc).__name__}")
    if isinstance(exc, _TRANSIENT):
        code = getattr(exc, "code", None)
        retry_after = None
        response = getattr(exc, "response", None)
        if isinstance(response, requests.Response):
            try:
                retry_after = float(response.headers.get("Retry-After", ""))
            except ValueError:
                retry_after = None
        return TransientError(f"{what}: {_message(exc)}", status=code, retry_after=retry_after)
    if isinstance(exc, gexc.NotFound):
        return NotFoundError(f"{what}: {_message(exc)}", status=404, reason="NOT_FOUND")
    if isinstance(exc, gexc.GoogleAPICallError):
        status = _status_name(exc)
        code = getattr(exc, "code", None)
        if status == FAILED_PRECONDITION:
            if "etag" in _message(exc).lower():
                return ConflictError(f"{what}: {_message(exc)}", status=code, reason=FAILED_PRECONDITION)
            return PermanentError(f"{what}: {_message(exc)}", status=code, reason=FAILED_PRECONDITION)
        if status == "ABORTED" or isinstance(exc, gexc.Aborted | gexc.Conflict):
            return ConflictError(f"{what}: {_message(exc)}", status=code, reason=status or "ABORTED")
        return PermanentError(f"{what}: {_message(exc)}", status=code, reason=status)
    return exc


def _when(value: Any) -> datetime:
    if not isinstance(value, datetime):
        return datetime.fromtimestamp(0, UTC)
    return datetime.fromtimestamp(value.timestamp(), UTC)


def _info(secret: secretmanager.Secret) -> SecretInfo:
    return SecretInfo(
        name=str(secret.name),
        labels=dict(secret.labels),
        annotations=dict(secret.annotations),
        version_aliases={str(k): int(v) for k, v in secret.version_aliases.items()},
        etag=str(secret.etag),
        create_time=_when(secret.create_time),
    )


def _version_info(version: secretmanager.SecretVersion) -> VersionInfo:
    return VersionInfo(
        number=int(str(version.name).rsplit("/", 1)[-1]),
        state=VersionState(version.state.name),
        create_time=_when(version.create_time),
        etag=str(version.etag),
        scheduled_destroy=(
            _when(version.scheduled_destroy_time)
            if secretmanager.SecretVersion.pb(version).HasField("scheduled_destroy_time")
            else None
        ),
    )


class SecretManagerStore:
    """The ``gatehouse.rotation.ports.SecretStore`` over Secret Manager v1."""

    def __init__(
        self,
        *,
        endpoint: str | None = None,
        credentials: Credentials | None = None,
        anonymous: bool = False,
        retry_attempts: int = 5,
        retry_max_wait: float = 20.0,
        timeout: float = 30.0,
        page_size: int = 250,
    ) -> None:
        self.client = rest_client(
            secretmanager.SecretManagerServiceClient,
            endpoint=endpoint,
            credentials=credentials,
            anonymous=anonymous,
        )
        quiet_payload_loggers()  # after the client: its set-up may configure these loggers
        self.retry = retrying(retry_attempts, retry_max_wait)
        self.retry_429 = retry_on_429(retry_attempts, retry_max_wait)
        self.timeout = timeout
        self.page_size = page_size

    def _call(
        self, what: str, fn: Callable[[], T], *, policy: Retrying | None = None, chain: bool = True
    ) -> T:
        return call(policy or self.retry, what, fn, map_secret_error, chain=chain)

    # -- reads ------------------------------------------------------------------------------------

    def _pages(self, what: str, list_page: Callable[[str], tuple[list[T], str]]) -> Iterator[T]:
        token = ""
        while True:
            items, token = self._call(what, functools.partial(list_page, token))
            yield from items
            if not token:
                return

    def list_secrets(self, parent: str, *, filter: str) -> Iterator[SecretInfo]:
        def page(token: str) -> tuple[list[SecretInfo], str]:
            request = secretmanager.ListSecretsRequest(
                parent=parent, filter=filter, page_size=self.page_size, page_token=token
            )
            pager = self.client.list_secrets(request=request, retry=None, timeout=self.timeout)
            first = next(iter(pager.pages))  # one HTTP call; we page ourselves so each page retries
            return [_info(s) for s in first.secrets], str(first.next_page_token)

        return self._pages(f"list secrets of {parent}", page)

    def get_secret(self, name: str) -> SecretInfo:
        secret = self._call(
            f"get secret {name}", lambda: self.client.get_secret(name=name, retry=None, timeout=self.timeout)
        )
        return _info(secret)

    def list_secret_versions(self, name: str) -> list[VersionInfo]:
        def page(token: str) -> tuple[list[VersionInfo], str]:
            request = secretmanager.ListSecretVersionsRequest(
                parent=name, page_size=self.page_size, page_token=token
            )
            pager = self.client.list_secret_versions(request=request, retry=None, timeout=self.timeout)
            first = next(iter(pager.pages))
            return [_version_info(v) for v in first.versions], str(first.next_page_token)

        return list(self._pages(f"list versions of {name}", page))

    def access_secret_version(self, name: str, version: str) -> AccessedVersion:
        path = f"{name}/versions/{version}"
        response = self._call(
            f"access {path}",
            lambda: self.client.access_secret_version(name=path, retry=None, timeout=self.timeout),
            chain=False,
        )
        payload = response.payload
        crc = (
            int(payload.data_crc32c)
            if secretmanager.SecretPayload.pb(payload).HasField("data_crc32c")
            else None
        )
        return AccessedVersion(
            number=int(str(response.name).rsplit("/", 1)[-1]),
            payload=Material(bytes(payload.data)),
            crc32c=crc,
        )

    # -- writes -----------------------------------------------------------------------------------

    def add_secret_version(self, name: str, payload: Material, *, crc32c: int) -> int:
        size = len(payload)
        if size > 64 * 1024:
            raise PermanentError(
                f"add a version to {name}: the payload is {size} bytes; Secret Manager takes at most 65536",
                status=400,
                reason="INVALID_ARGUMENT",
            )

        def add() -> secretmanager.SecretVersion:
            request = secretmanager.AddSecretVersionRequest(
                parent=name, payload=secretmanager.SecretPayload(data=payload.reveal(), data_crc32c=crc32c)
            )
            return self.client.add_secret_version(request=request, retry=None, timeout=self.timeout)

        version = self._call(f"add a version to {name}", add, policy=self.retry_429, chain=False)
        return int(str(version.name).rsplit("/", 1)[-1])

    def update_secret(
        self,
        name: str,
        *,
        etag: str,
        version_aliases: Mapping[str, int] | None = None,
        annotations: Mapping[str, str] | None = None,
    ) -> SecretInfo:
        paths = []
        secret = secretmanager.Secret(name=name, etag=etag)
        if version_aliases is not None:
            paths.append("version_aliases")
            secret.version_aliases = {str(k): int(v) for k, v in version_aliases.items()}
        if annotations is not None:
            paths.append("annotations")
            secret.annotations = dict(annotations)
        if not paths:
            raise PermanentError(
                f"update secret {name}: nothing to update", status=400, reason="INVALID_ARGUMENT"
            )
        mask = field_mask_pb2.FieldMask(paths=paths)
        updated = self._call(
            f"update secret {name} ({', '.join(paths)})",
            lambda: self.client.update_secret(
                secret=secret, update_mask=mask, retry=None, timeout=self.timeout
            ),
        )
        return _info(updated)

    def disable_secret_version(self, name: str, version: int, *, etag: str) -> None:
        path = f"{name}/versions/{version}"
        request = secretmanager.DisableSecretVersionRequest(name=path, etag=etag)
        self._call(
            f"disable {path}",
            lambda: self.client.disable_secret_version(request=request, retry=None, timeout=self.timeout),
        )

    def enable_secret_version(self, name: str, version: int, *, etag: str) -> None:
        path = f"{name}/versions/{version}"
        request = secretmanager.EnableSecretVersionRequest(name=path, etag=etag)
        self._call(
            f"enable {path}",
            lambda: self.client.enable_secret_version(request=request, retry=None, timeout=self.timeout),
        )

    def destroy_secret_version(self, name: str, version: int, *, etag: str) -> None:
        path = f"{name}/versions/{version}"
        request = secretmanager.DestroySecretVersionRequest(name=path, etag=etag)
        self._call(
            f"destroy {path}",
            lambda: self.client.destroy_secret_version(request=request, retry=None, timeout=self.timeout),
        )

    def close(self) -> None:
        self.client.transport.close()  # type: ignore[no-untyped-call]
