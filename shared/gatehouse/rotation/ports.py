"""The calls rotation makes to the outside world, as ``typing.Protocol``s, close to the real APIs.

Adapters implement them against Secret Manager v1 (``google-cloud-secret-manager``), IAM v1
(REST through google-auth: ``google-cloud-iam`` has no REST transport), the Org Policy API v2 and
Cloud Run Admin v2;
tests use the in-memory fakes in ``tests/rotation_fakes.py``, which model the same semantics.
This module is pure (dataclasses and Protocols only) so the planner can import its types.

Error contract every adapter follows (``gatehouse.errors``):

* ``NotFoundError``: the resource does not exist (HTTP 404).
* ``ConflictError``: an etag precondition failed (Secret Manager answers FAILED_PRECONDITION or
  ABORTED when ``Secret.etag`` / ``SecretVersion.etag`` does not match). The caller re-reads.
* ``PermanentError(status=400, reason="FAILED_PRECONDITION")``: the resource is in the wrong state
  (access to a DISABLED version, destroy of a DESTROYED one) or IAM refuses to create a key
  ("Precondition check failed.": 10 keys already, or an organization policy forbids keys).
* ``TransientError``: 429, 5xx, deadline exceeded, connection errors; adapters retry a few times
  first, then raise it.
* ``CredentialRejectedError``: a test of a new credential failed for good (not a propagation delay).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Literal, Protocol

from gatehouse.errors import PermanentError
from gatehouse.rotation.material import Material


class CredentialRejectedError(PermanentError):
    """A new credential did not pass its test; the message names the check, never the material."""


# -- Secret Manager -----------------------------------------------------------------------------


@dataclass(frozen=True)
class SecretInfo:
    """``Secret`` (GetSecret / ListSecrets), the fields rotation reads."""

    name: str  # projects/P/secrets/S
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    version_aliases: Mapping[str, int]
    etag: str
    create_time: datetime


class VersionState(StrEnum):
    ENABLED = "ENABLED"
    DISABLED = "DISABLED"
    DESTROYED = "DESTROYED"


@dataclass(frozen=True)
class VersionInfo:
    """``SecretVersion`` (ListSecretVersions); ``number`` is the last segment of its name."""

    number: int
    state: VersionState
    create_time: datetime
    etag: str
    # ``scheduledDestroyTime``: a destroy of a secret with ``versionDestroyTtl`` only disables the
    # version until then (it is DESTROYED afterwards); None when no destruction is scheduled
    scheduled_destroy: datetime | None = None

    @property
    def destroy_pending(self) -> bool:
        """Destroyed as far as anyone can act: only the delayed destruction is still to happen."""
        return self.state is VersionState.DISABLED and self.scheduled_destroy is not None


@dataclass(frozen=True)
class AccessedVersion:
    """``AccessSecretVersionResponse``: the resolved version number and ``payload.data/dataCrc32c``."""

    number: int
    payload: Material
    crc32c: int | None


class SecretStore(Protocol):
    """Secret Manager v1: the calls one rotation needs."""

    def list_secrets(self, parent: str, *, filter: str) -> Iterable[SecretInfo]:
        """ListSecrets for ``projects/P`` with a filter such as ``labels.gatehouse-rotate:*``;
        the adapter follows ``nextPageToken``."""
        ...

    def get_secret(self, name: str) -> SecretInfo: ...

    def list_secret_versions(self, name: str) -> list[VersionInfo]:
        """Every version, including DISABLED and DESTROYED ones (no filter)."""
        ...

    def add_secret_version(self, name: str, payload: Material, *, crc32c: int) -> int:
        """AddSecretVersion with ``payload.dataCrc32c``; returns the new version number. Payloads
        over 64 KiB are rejected (PermanentError, INVALID_ARGUMENT)."""
        ...

    def access_secret_version(self, name: str, version: str) -> AccessedVersion:
        """AccessSecretVersion of a number, an alias or ``latest``. ``latest`` is the
        highest-numbered version whatever its state (Google: "the most recently created
        SecretVersion"); like any version that is DISABLED or DESTROYED, reading it then raises
        PermanentError(reason="FAILED_PRECONDITION"): it never falls back to an older version."""
        ...

    def update_secret(
        self,
        name: str,
        *,
        etag: str,
        version_aliases: Mapping[str, int] | None = None,
        annotations: Mapping[str, str] | None = None,
    ) -> SecretInfo:
        """UpdateSecret with ``Secret.etag`` and an update mask naming exactly the fields given
        (``version_aliases``, ``annotations``): each given map REPLACES the stored one. Etag
        mismatch raises ConflictError (UpdateSecret has no other FAILED_PRECONDITION, so an adapter
        maps that code to ConflictError); annotations of 16 KiB or more are rejected."""
        ...

    def disable_secret_version(self, name: str, version: int, *, etag: str) -> None:
        """DisableSecretVersion with ``SecretVersion.etag`` (pass it via ``request=`` in Python)."""
        ...

    def destroy_secret_version(self, name: str, version: int, *, etag: str) -> None:
        """DestroySecretVersion with ``SecretVersion.etag``; DESTROYED is terminal. On a secret with
        ``versionDestroyTtl`` the version becomes DISABLED with ``scheduledDestroyTime`` instead, and
        DESTROYED once that time has passed."""
        ...


# -- IAM service-account keys -------------------------------------------------------------------


@dataclass(frozen=True)
class KeyInfo:
    """A USER_MANAGED ``ServiceAccountKey``; ``key_id`` is the last segment of its name."""

    key_id: str
    valid_after: datetime
    valid_before: datetime | None  # None: no expiry (IAM reports 9999-12-31T23:59:59Z)
    disabled: bool


@dataclass(frozen=True)
class NewKey:
    """CreateServiceAccountKey's answer: ``privateKeyData`` decoded to the JSON key file."""

    key_id: str
    private_key_data: Material


class KeyAdmin(Protocol):
    """IAM v1 ``projects.serviceAccounts.keys``; ``email`` is the service account."""

    def list_service_account_keys(self, email: str) -> list[KeyInfo]:
        """ListServiceAccountKeys with ``keyTypes=USER_MANAGED`` (disabled keys included)."""
        ...

    def create_service_account_key(self, email: str) -> NewKey:
        """TYPE_GOOGLE_CREDENTIALS_FILE, KEY_ALG_RSA_2048."""
        ...

    def disable_service_account_key(self, email: str, key_id: str) -> None: ...

    def delete_service_account_key(self, email: str, key_id: str) -> None: ...

    def get_public_key(self, email: str, key_id: str) -> bytes | None:
        """GetServiceAccountKey with ``publicKeyType=TYPE_X509_PEM_FILE``: the PEM certificate,
        or None when the adapter cannot fetch public keys (the signature check is then skipped)."""
        ...


# -- Organization policy ------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyPolicy:
    """The effective key policies on a project (Org Policy v2 ``getEffectivePolicy``)."""

    # the enforced constraint that forbids key creation, e.g. "iam.disableServiceAccountKeyCreation"
    # or "iam.managed.disableServiceAccountKeyCreation"; None when creation is allowed
    creation_blocked_by: str | None = None
    # iam.serviceAccountKeyExpiryHours: new keys expire this many hours after creation
    expiry_hours: int | None = None


class OrgPolicies(Protocol):
    def key_policy(self, project: str) -> KeyPolicy:
        """``project`` is the id or number the service account's email names."""
        ...


# -- Consumers (Cloud Run services and jobs) ----------------------------------------------------


@dataclass(frozen=True)
class ConsumerRef:
    """One reference to a secret from a Cloud Run service or job (Admin API v2 template).

    ``via="env"``: ``containers[].env[].valueSource.secretKeyRef{secret, version}``, resolved when
    an instance starts. ``via="volume"``: ``volumes[].secret.items[].version``, read on access.
    """

    kind: Literal["service", "job"]
    name: str  # projects/P/locations/L/services/S or .../jobs/J
    container: str
    via: Literal["env", "volume"]
    detail: str  # the env var name or the mounted file path
    version: str  # as written: "latest", a number such as "3", or an alias such as "current"
    updated: datetime | None = None  # Service.updateTime / Job.updateTime


class Consumers(Protocol):
    def list_consumers(self, secret: str) -> list[ConsumerRef]:
        """Services and jobs whose template references ``secret`` (projects/P/secrets/S)."""
        ...

    def roll(self, consumer: ConsumerRef, *, version: str) -> str:
        """Deploy a new revision (service) or update the template (job) so that this reference
        reads ``version``; returns the new revision or generation for the report."""
        ...


# -- Optional live test, clock ------------------------------------------------------------------


class TokenExchange(Protocol):
    def exchange(self, key_file: Material) -> None:
        """Mint an access token with the key (a real OAuth exchange). Raise TransientError while
        the key may still be propagating (IAM: "60 seconds or more"), CredentialRejectedError when it
        is refused for good."""
        ...


class Clock(Protocol):
    def now(self) -> datetime:
        """Timezone-aware UTC."""
        ...


@dataclass(frozen=True)
class RotationPorts:
    """Everything the executor talks to; ``consumers`` and ``token_exchange`` are optional."""

    secrets: SecretStore
    keys: KeyAdmin
    policies: OrgPolicies
    clock: Clock
    consumers: Consumers | None = None
    token_exchange: TokenExchange | None = None
