"""Reading services' OpenAPI specs (``gatehouse.ports.SpecSource``).

A path on the service: Cloud Run only admits callers holding ``roles/run.invoker``, which the
proxy's service account already holds on every registered service. So gatehouse mints a Google ID
token *as that account* (IAM Credentials ``generateIdToken``, audience = the service URL, the only
audience Cloud Run accepts besides custom ones), which needs ``roles/iam.serviceAccountOpenIdTokenCreator``
on that one account and no invoker grant of gatehouse's own. No client library covers IAM
Credentials on REST, so the call goes through google-auth's AuthorizedSession like the other REST
APIs. The spec is then fetched with plain ``requests``: the ID token in ``Authorization``, no
redirects followed (the token must not travel elsewhere), streamed and cut at the size limit.

A ``gs://`` URI: the official google-cloud-storage client (``STORAGE_EMULATOR_HOST`` points it at an
emulator), imported only here. One metadata read gives generation and size; the bytes of exactly
that generation are read only when the caller needs them.
"""

from __future__ import annotations

import functools
from typing import Any
from urllib.parse import quote, urlsplit

import requests
from google.auth.credentials import Credentials

from gatehouse.adapters.http import GoogleRest, retrying, transport_error
from gatehouse.errors import NotFoundError, PermanentError, TransientError, is_transient_status
from gatehouse.ports import ObjectVersion
from gatehouse.registration.openapi import MAX_SPEC_BYTES, SpecError

ACCEPT = "application/json, application/yaml;q=0.9, application/x-yaml;q=0.9, text/yaml;q=0.8, */*;q=0.1"
CHUNK = 64 * 1024


class SpecReader:
    """Reads specs from services (as ``proxy_service_account``) and from Cloud Storage."""

    def __init__(
        self,
        proxy_service_account: str,
        *,
        iamcredentials_endpoint: str | None = None,
        service_endpoint: str | None = None,
        credentials: Credentials | None = None,
        anonymous: bool = False,
        retry_attempts: int = 5,
        retry_max_wait: float = 20.0,
        timeout: float = 30.0,
    ) -> None:
        self.account = proxy_service_account
        self.iam = GoogleRest(
            (iamcredentials_endpoint or "https://iamcredentials.googleapis.com").rstrip("/") + "/v1",
            credentials=credentials,
            anonymous=anonymous,
            retry_attempts=retry_attempts,
            retry_max_wait=retry_max_wait,
            timeout=timeout,
        )
        self.service_endpoint = service_endpoint.rstrip("/") if service_endpoint else None
        self.anonymous = anonymous
        self.credentials = credentials
        self.retry = retrying(retry_attempts, retry_max_wait)
        self.timeout = timeout
        self.http = requests.Session()

    # -- a path on the service ------------------------------------------------------------------

    def id_token(self, audience: str) -> str:
        """An ID token for ``audience`` minted as the proxy service account (IAM Credentials)."""
        name = f"projects/-/serviceAccounts/{quote(self.account, safe='@.')}"
        answer = self.iam.request(
            "POST",
            f"/{name}:generateIdToken",
            f"mint an ID token as {self.account}",
            json={"audience": audience, "includeEmail": True},
        )
        token = answer.get("token") if isinstance(answer, dict) else None
        if not isinstance(token, str) or not token:
            raise PermanentError(f"generateIdToken for {self.account} answered without a token")
        return token

    def service_spec(self, service_url: str, path: str, *, limit: int = MAX_SPEC_BYTES) -> bytes:
        token = self.id_token(service_url)
        host = urlsplit(service_url).netloc
        url = (self.service_endpoint or service_url) + path
        headers = {"Authorization": f"Bearer {token}", "Accept": ACCEPT}
        if self.service_endpoint:
            headers["Host"] = host  # the local stand-in routes service traffic by host, as Cloud Run does
        return self.retry(self._get, url, headers, f"{service_url}{path}", limit)

    def _get(self, url: str, headers: dict[str, str], shown: str, limit: int) -> bytes:
        try:
            with self.http.get(
                url, headers=headers, stream=True, allow_redirects=False, timeout=self.timeout
            ) as response:
                status = response.status_code
                if 300 <= status < 400:
                    raise SpecError(f"{shown} answered a redirect ({status}); it is not followed")
                if status == 404:
                    raise SpecError(f"{shown} answered 404: the service serves no spec at that path")
                if status in (401, 403):
                    raise PermanentError(
                        f"{shown} answered {status} to {self.account}", status=status, reason="DENIED"
                    )
                if is_transient_status(status):
                    raise TransientError(f"{shown} answered {status}", status=status)
                if status >= 400:
                    raise SpecError(f"{shown} answered {status}")
                body = bytearray()
                for chunk in response.iter_content(CHUNK):
                    body += chunk
                    if len(body) > limit:
                        raise SpecError(f"{shown} is larger than {limit // (1024 * 1024)} MB")
                return bytes(body)
        except requests.RequestException as exc:
            raise transport_error(exc, f"read {shown}") from None

    # -- Cloud Storage ----------------------------------------------------------------------------

    @functools.cached_property
    def storage(self) -> Any:
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage  # type: ignore[attr-defined,unused-ignore]

        credentials = self.credentials
        if credentials is None and self.anonymous:
            credentials = AnonymousCredentials()  # type: ignore[no-untyped-call]
        return storage.Client(project="-" if self.anonymous else None, credentials=credentials)

    def object_version(self, bucket: str, name: str) -> ObjectVersion:
        uri = f"gs://{bucket}/{name}"
        blob = self._storage_call(
            uri, lambda: self.storage.bucket(bucket).get_blob(name, timeout=self.timeout)
        )
        if blob is None:
            raise SpecError(f"{uri} does not exist")
        return ObjectVersion(generation=str(blob.generation), size=int(blob.size or 0))

    def object_bytes(self, bucket: str, name: str, generation: str, *, limit: int = MAX_SPEC_BYTES) -> bytes:
        uri = f"gs://{bucket}/{name}"
        blob = self.storage.bucket(bucket).blob(name, generation=int(generation))
        # end is inclusive: one byte more than the limit tells a too-large object apart
        data: bytes = self._storage_call(
            uri, lambda: blob.download_as_bytes(start=0, end=limit, timeout=self.timeout)
        )
        if len(data) > limit:
            raise SpecError(f"{uri} is larger than {limit // (1024 * 1024)} MB")
        return data

    def _storage_call(self, uri: str, fn: Any) -> Any:
        from gatehouse.adapters.gapic import call

        try:
            return call(self.retry, f"read {uri}", fn)
        except NotFoundError:
            raise SpecError(f"{uri} does not exist") from None
        except PermanentError as exc:
            if exc.status in (401, 403):
                raise SpecError(
                    f"gatehouse may not read {uri} (grant it roles/storage.objectViewer)"
                ) from None
            raise
