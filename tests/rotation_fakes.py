"""In-memory fakes of the rotation ports, with the semantics of the real services.

Secret Manager: versions numbered from 1, ``versionDestroyTtl`` (a destroy disables the version
and sets ``scheduledDestroyTime``; it is DESTROYED once that time has passed), ``latest`` = the
highest-numbered version whatever its state (Google: "the most recently created SecretVersion";
accessing it when that version is DISABLED or DESTROYED fails with FAILED_PRECONDITION, it never
falls back), aliases (not
``latest``/``NEW``, at most 50, must name an existing version), a new secret etag on every
UpdateSecret and a precondition failure on a stale one, version etags, annotation key syntax and
the 16 KiB total, DESTROYED is terminal, payloads of at most 64 KiB with a CRC32C check. IAM: 10
user-managed keys per account (disabled keys count) and FAILED_PRECONDITION "Precondition check
failed." on the 11th, org policies that block creation or set an expiry, key files that are real
RSA service-account JSON (keys generated once per test session) so google-auth loads and signs.

Every port call goes through :class:`Faults`: it can raise ``TransientError`` (on the Nth call of a
method, or at a random rate, before the effect or after it as a lost response), raise
:class:`Crash` after the k-th write (a process killed right after a call), and runs observers
after every call so that tests can check invariants at every observable moment.
"""

from __future__ import annotations

import functools
import json
import random
import re
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from gatehouse.errors import ConflictError, NotFoundError, PermanentError, TransientError
from gatehouse.rotation import material
from gatehouse.rotation.generate import GeneratorSpec, nonconformance
from gatehouse.rotation.material import Material
from gatehouse.rotation.ports import (
    AccessedVersion,
    ConsumerRef,
    KeyInfo,
    KeyPolicy,
    NewKey,
    RotationPorts,
    SecretInfo,
    VersionInfo,
    VersionState,
)
from gatehouse.rotation.state import read_state
from gatehouse.rotation.target import account_project

T0 = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)
KEY_LIMIT = 10
MAX_PAYLOAD = 64 * 1024
MAX_ANNOTATIONS = 16 * 1024
_ALIAS = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,62}$")
_ANNOTATION_KEY = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$")


class Crash(BaseException):
    """The process was killed right after a call took effect; nothing in the job catches it."""


@functools.cache
def rsa_key_pairs() -> tuple[tuple[str, bytes], ...]:
    """Two RSA-2048 key pairs per session: (PKCS#8 private PEM, SubjectPublicKeyInfo PEM)."""
    pairs = []
    for _ in range(2):
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode("ascii")
        public = private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        pairs.append((pem, public))
    return tuple(pairs)


def key_file(email: str, key_id: str, pair: int = 0) -> bytes:
    """A service-account JSON key file as IAM returns it in ``privateKeyData``."""
    project = email.split("@", 1)[1].split(".", 1)[0]
    info = {
        "type": "service_account",
        "project_id": project,
        "private_key_id": key_id,
        "private_key": rsa_key_pairs()[pair][0],
        "client_email": email,
        "client_id": "1" + "0" * 20,
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": "https://oauth2.googleapis.com/token",
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "client_x509_cert_url": f"https://www.googleapis.com/robot/v1/metadata/x509/{email}",
        "universe_domain": "googleapis.com",
    }
    return json.dumps(info, indent=2).encode()


class FakeClock:
    def __init__(self, now: datetime = T0) -> None:
        self._now = now

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> None:
        self._now += delta


@dataclass
class Faults:
    """Fault injection and observation for every port call."""

    rng: random.Random = field(default_factory=lambda: random.Random(7))
    transient_rate: float = 0.0
    fail_nth: set[tuple[str, int]] = field(default_factory=set)  # (method, n): TransientError
    crash_after_write: int | None = None
    jitter: float = 0.0  # up to this many seconds of sleep before each call (shakes thread interleavings)
    observers: list[Callable[[str], None]] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    writes: list[str] = field(default_factory=list)
    calls: int = 0

    def before(self, method: str, write: bool) -> bool:
        """Raise a fault before the effect, or return True to lose the response after it."""
        self.counts[method] += 1
        if (method, self.counts[method]) in self.fail_nth:
            raise TransientError(f"injected: {method} call {self.counts[method]} failed", status=503)
        if self.transient_rate and self.rng.random() < self.transient_rate:
            if write and self.rng.random() < 0.5:
                return True
            raise TransientError(f"injected: {method} unavailable", status=503)
        return False

    def after(self, method: str, write: bool, lose_response: bool) -> None:
        self.calls += 1
        if write:
            self.writes.append(method)
        for observe in self.observers:
            observe(method)
        if write and self.crash_after_write == len(self.writes):
            raise Crash(f"killed after write {len(self.writes)} ({method})")
        if lose_response:
            raise TransientError(f"injected: {method} response lost (the call took effect)", status=504)


def _port_call(write: bool) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def wrap(method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def call(self: Any, *args: Any, **kwargs: Any) -> Any:
            world: World = self.world
            if world.faults.jitter:
                time.sleep(world.faults.rng.random() * world.faults.jitter)
            with world.lock:
                lose = world.faults.before(method.__name__, write)
                result = method(self, *args, **kwargs)
                world.faults.after(method.__name__, write, lose)
                return result

        return call

    return wrap


def _precondition(message: str) -> PermanentError:
    return PermanentError(message, status=400, reason="FAILED_PRECONDITION")


def _invalid(message: str) -> PermanentError:
    return PermanentError(message, status=400, reason="INVALID_ARGUMENT")


# -- Secret Manager --------------------------------------------------------------------------------


@dataclass
class StoredVersion:
    number: int
    state: VersionState
    create_time: datetime
    payload: bytes | None
    crc: int
    etag: str
    scheduled_destroy: datetime | None = None  # versionDestroyTtl: DISABLED until then


@dataclass
class StoredSecret:
    name: str
    labels: dict[str, str]
    annotations: dict[str, str]
    aliases: dict[str, int]
    etag: str
    create_time: datetime
    versions: dict[int, StoredVersion] = field(default_factory=dict)
    destroy_ttl: timedelta | None = None  # Secret.versionDestroyTtl

    def latest(self) -> StoredVersion | None:
        """What ``latest`` names: the highest-numbered version, whatever its state."""
        return self.versions[max(self.versions)] if self.versions else None

    def resolve(self, version: str) -> StoredVersion:
        if version == "latest":
            found = self.latest()
        elif version.isdigit():
            found = self.versions.get(int(version))
        else:
            number = self.aliases.get(version)
            found = self.versions.get(number) if number is not None else None
        if found is None:
            raise NotFoundError(f"{self.name}/versions/{version} not found", status=404)
        return found


class FakeSecretManager:
    def __init__(self, world: World) -> None:
        self.world = world
        self.secrets: dict[str, StoredSecret] = {}
        self._etags = 0
        self.stored: list[bytes] = []  # every payload ever stored, for leak scans
        self.corrupt_next_add = False  # store a damaged payload (with a matching checksum) once
        # project id -> number: names in answers use the number, as the real API does; requests
        # may use either
        self.project_numbers: dict[str, str] = {}

    def canonical(self, name: str) -> str:
        parts = name.split("/")
        if len(parts) >= 2 and parts[0] == "projects":
            parts[1] = self.project_numbers.get(parts[1], parts[1])
        return "/".join(parts)

    def _etag(self) -> str:
        self._etags += 1
        return f'"{self._etags:016x}"'

    def _secret(self, name: str) -> StoredSecret:
        try:
            secret = self.secrets[self.canonical(name)]
        except KeyError:
            raise NotFoundError(f"Secret [{name}] not found or has no versions.", status=404) from None
        now = self.world.clock.now()
        for version in secret.versions.values():  # delayed destructions that are due
            if version.scheduled_destroy is not None and version.scheduled_destroy <= now:
                version.state, version.payload, version.scheduled_destroy = VersionState.DESTROYED, None, None
                version.etag = self._etag()
        return secret

    # setup, not port calls
    def create(self, name: str, labels: dict[str, str], annotations: dict[str, str]) -> StoredSecret:
        name = self.canonical(name)
        secret = StoredSecret(name, dict(labels), dict(annotations), {}, self._etag(), self.world.clock.now())
        self.secrets[name] = secret
        return secret

    def seed_version(self, name: str, payload: bytes, created: datetime) -> int:
        secret = self.secrets[self.canonical(name)]
        self.stored.append(payload)
        number = len(secret.versions) + 1
        secret.versions[number] = StoredVersion(
            number, VersionState.ENABLED, created, payload, material.crc32c(payload), self._etag()
        )
        return number

    @staticmethod
    def info(secret: StoredSecret) -> SecretInfo:
        return SecretInfo(
            name=secret.name,
            labels=dict(secret.labels),
            annotations=dict(secret.annotations),
            version_aliases=dict(secret.aliases),
            etag=secret.etag,
            create_time=secret.create_time,
        )

    # port
    @_port_call(write=False)
    def list_secrets(self, parent: str, *, filter: str) -> list[SecretInfo]:
        match = re.fullmatch(r"labels\.([a-z0-9_-]+):\*", filter)
        if match is None:
            raise _invalid(f"unsupported filter {filter!r}")
        return [
            self.info(s)
            for name, s in sorted(self.secrets.items())
            if name.startswith(self.canonical(parent) + "/secrets/") and match[1] in s.labels
        ]

    @_port_call(write=False)
    def get_secret(self, name: str) -> SecretInfo:
        return self.info(self._secret(name))

    @_port_call(write=False)
    def list_secret_versions(self, name: str) -> list[VersionInfo]:
        secret = self._secret(name)
        return [
            VersionInfo(v.number, v.state, v.create_time, v.etag, v.scheduled_destroy)
            for v in sorted(secret.versions.values(), key=lambda v: -v.number)
        ]

    @_port_call(write=True)
    def add_secret_version(self, name: str, payload: Material, *, crc32c: int) -> int:
        secret = self._secret(name)
        data = payload.reveal()
        if len(data) > MAX_PAYLOAD:
            raise _invalid(f"payload is {len(data)} bytes; the limit is {MAX_PAYLOAD}")
        if crc32c != material.crc32c(data):
            raise _invalid("Checksum mismatch: the payload's data_crc32c does not match")
        if self.corrupt_next_add:
            self.corrupt_next_add = False
            data, crc32c = b"~" + data[1:], material.crc32c(b"~" + data[1:])
        self.stored.append(data)
        number = max(secret.versions, default=0) + 1
        secret.versions[number] = StoredVersion(
            number, VersionState.ENABLED, self.world.clock.now(), data, crc32c, self._etag()
        )
        return number

    @_port_call(write=False)
    def access_secret_version(self, name: str, version: str) -> AccessedVersion:
        return self.access(name, version)

    def access(self, name: str, version: str) -> AccessedVersion:
        """AccessSecretVersion without the port machinery (no faults, no observers): for invariant
        checks that read the way a consumer does."""
        found = self._secret(name).resolve(version)
        if found.state is not VersionState.ENABLED or found.payload is None:
            raise _precondition(f"Secret Version [{name}/versions/{found.number}] is in {found.state} state.")
        return AccessedVersion(found.number, Material(found.payload), found.crc)

    @_port_call(write=True)
    def update_secret(
        self,
        name: str,
        *,
        etag: str,
        version_aliases: dict[str, int] | None = None,
        annotations: dict[str, str] | None = None,
    ) -> SecretInfo:
        secret = self._secret(name)
        if etag != secret.etag:
            raise ConflictError(
                f"etag {etag} does not match {secret.etag}", status=400, reason="FAILED_PRECONDITION"
            )
        if version_aliases is None and annotations is None:
            raise _invalid("update_mask is empty")
        if version_aliases is not None:
            self._check_aliases(secret, version_aliases)
        if annotations is not None:
            self._check_annotations(annotations)
        if version_aliases is not None:
            secret.aliases = dict(version_aliases)
        if annotations is not None:
            secret.annotations = dict(annotations)
        secret.etag = self._etag()
        return self.info(secret)

    @staticmethod
    def _check_aliases(secret: StoredSecret, aliases: dict[str, int]) -> None:
        if len(aliases) > 50:
            raise _invalid("at most 50 version aliases")
        for alias, number in aliases.items():
            if not _ALIAS.fullmatch(alias) or alias in ("latest", "NEW"):
                raise _invalid(f"invalid alias {alias!r}")
            if number not in secret.versions:
                raise _invalid(f"alias {alias} names version {number}, which does not exist")

    @staticmethod
    def _check_annotations(annotations: dict[str, str]) -> None:
        size = 0
        for key, value in annotations.items():
            if not _ANNOTATION_KEY.fullmatch(key) or len(key.encode()) > 128:
                raise _invalid(f"invalid annotation key {key!r}")
            size += len(key.encode()) + len(value.encode())
        if size >= MAX_ANNOTATIONS:
            raise _invalid(f"annotations total {size} bytes; they must be less than 16 KiB")

    def _version(self, name: str, number: int, etag: str) -> StoredVersion:
        secret = self._secret(name)
        version = secret.versions.get(number)
        if version is None:
            raise NotFoundError(f"{name}/versions/{number} not found", status=404)
        if etag != version.etag:
            raise ConflictError(
                f"version etag {etag} does not match", status=400, reason="FAILED_PRECONDITION"
            )
        if version.state is VersionState.DESTROYED:
            raise _precondition(f"{name}/versions/{number} is DESTROYED")
        return version

    @_port_call(write=True)
    def disable_secret_version(self, name: str, version: int, *, etag: str) -> None:
        stored = self._version(name, version, etag)
        stored.state = VersionState.DISABLED
        stored.etag = self._etag()

    @_port_call(write=True)
    def destroy_secret_version(self, name: str, version: int, *, etag: str) -> None:
        stored = self._version(name, version, etag)
        ttl = self._secret(name).destroy_ttl
        if ttl:  # versionDestroyTtl: disabled now, destroyed when the time has passed
            if stored.scheduled_destroy is None:
                stored.state = VersionState.DISABLED
                stored.scheduled_destroy = self.world.clock.now() + ttl
                stored.etag = self._etag()
            return
        stored.state = VersionState.DESTROYED
        stored.payload = None
        stored.etag = self._etag()


# -- IAM and org policy ----------------------------------------------------------------------------


@dataclass
class StoredKey:
    key_id: str
    valid_after: datetime
    valid_before: datetime | None
    disabled: bool
    pair: int


class FakePolicies:
    def __init__(self, world: World) -> None:
        self.world = world
        self.by_project: dict[str, KeyPolicy] = {}

    @_port_call(write=False)
    def key_policy(self, project: str) -> KeyPolicy:
        return self.by_project.get(project, KeyPolicy())


class FakeIam:
    def __init__(self, world: World) -> None:
        self.world = world
        self.keys: dict[str, dict[str, StoredKey]] = {}
        self.created: list[tuple[str, str]] = []  # (email, key id) of every created key
        # projects whose org policy forbids key creation although the job cannot read that policy
        self.unreadable_blocks: set[str] = set()

    def _keys(self, email: str) -> dict[str, StoredKey]:
        return self.keys.setdefault(email, {})

    def _key(self, email: str, key_id: str) -> StoredKey:
        try:
            return self._keys(email)[key_id]
        except KeyError:
            raise NotFoundError(f"Service account key {key_id} does not exist.", status=404) from None

    # setup, not a port call
    def seed_key(self, email: str, created: datetime) -> tuple[str, bytes]:
        key_id = secrets.token_hex(20)
        pair = len(self._keys(email)) % 2
        self._keys(email)[key_id] = StoredKey(key_id, created, None, False, pair)
        return key_id, key_file(email, key_id, pair)

    @_port_call(write=False)
    def list_service_account_keys(self, email: str) -> list[KeyInfo]:
        return [
            KeyInfo(k.key_id, k.valid_after, k.valid_before, k.disabled) for k in self._keys(email).values()
        ]

    @_port_call(write=True)
    def create_service_account_key(self, email: str) -> NewKey:
        policy = self.world.policies.by_project.get(account_project(email), KeyPolicy())
        if policy.creation_blocked_by or account_project(email) in self.unreadable_blocks:
            raise _precondition("Key creation is not allowed on this service account.")
        keys = self._keys(email)
        if len(keys) >= KEY_LIMIT:
            raise _precondition("Precondition check failed.")
        now = self.world.clock.now()
        key_id = secrets.token_hex(20)
        expiry = timedelta(hours=policy.expiry_hours) if policy.expiry_hours else None
        pair = len(self.created) % 2
        keys[key_id] = StoredKey(key_id, now, now + expiry if expiry else None, False, pair)
        self.created.append((email, key_id))
        return NewKey(key_id, Material(key_file(email, key_id, pair)))

    @_port_call(write=True)
    def disable_service_account_key(self, email: str, key_id: str) -> None:
        self._key(email, key_id).disabled = True

    @_port_call(write=True)
    def delete_service_account_key(self, email: str, key_id: str) -> None:
        self._key(email, key_id)
        del self._keys(email)[key_id]

    @_port_call(write=False)
    def get_public_key(self, email: str, key_id: str) -> bytes:
        return rsa_key_pairs()[self._key(email, key_id).pair][1]


# -- consumers, token exchange ---------------------------------------------------------------------


class FakeConsumers:
    def __init__(self, world: World) -> None:
        self.world = world
        self.refs: dict[str, list[ConsumerRef]] = {}
        self.rolled: list[tuple[str, str]] = []

    @_port_call(write=False)
    def list_consumers(self, secret: str) -> list[ConsumerRef]:
        return list(self.refs.get(secret, []))

    @_port_call(write=True)
    def roll(self, consumer: ConsumerRef, *, version: str) -> str:
        for refs in self.refs.values():
            if consumer in refs:
                refs[refs.index(consumer)] = replace(
                    consumer, version=version, updated=self.world.clock.now()
                )
                self.rolled.append((consumer.name, version))
                return f"{consumer.name.rsplit('/', 1)[-1]}-{len(self.rolled):05d}"
        raise NotFoundError(f"{consumer.name} has no such secret reference", status=404)


class FakeTokenExchange:
    def __init__(self, world: World, reject: Exception | None = None) -> None:
        self.world = world
        self.reject = reject
        self.exchanged = 0

    @_port_call(write=False)
    def exchange(self, key_file: Material) -> None:
        json.loads(key_file.reveal())
        self.exchanged += 1
        if self.reject is not None:
            raise self.reject


# -- the world -------------------------------------------------------------------------------------


class World:
    """One consistent set of fakes sharing a clock, a lock and fault injection."""

    def __init__(self, now: datetime = T0) -> None:
        self.lock = threading.RLock()
        self.clock = FakeClock(now)
        self.faults = Faults()
        self.sm = FakeSecretManager(self)
        self.iam = FakeIam(self)
        self.policies = FakePolicies(self)
        self.consumers = FakeConsumers(self)
        self.token_exchange = FakeTokenExchange(self)

    def ports(self, *, consumers: bool = True, token_exchange: bool = False) -> RotationPorts:
        return RotationPorts(
            secrets=self.sm,
            keys=self.iam,
            policies=self.policies,
            clock=self.clock,
            consumers=self.consumers if consumers else None,
            token_exchange=self.token_exchange if token_exchange else None,
        )

    def add_sa_key_target(
        self,
        name: str,
        email: str,
        *,
        age: timedelta = timedelta(days=100),
        annotations: dict[str, str] | None = None,
        versions: int = 1,
    ) -> str:
        """A secret set up by hand: ``versions`` versions, each with its own key, no aliases."""
        self.sm.create(
            name,
            {"gatehouse-rotate": "sa-key"},
            {"gatehouse-service-account": email, **(annotations or {})},
        )
        for _ in range(versions):
            _, data = self.iam.seed_key(email, self.clock.now() - age)
            self.sm.seed_version(name, data, self.clock.now() - age)
        return name

    def add_generated_target(
        self,
        name: str,
        *,
        age: timedelta = timedelta(days=100),
        annotations: dict[str, str] | None = None,
        value: str | None = None,
    ) -> str:
        self.sm.create(name, {"gatehouse-rotate": "generated"}, dict(annotations or {}))
        seed = value if value is not None else secrets.token_hex(16)
        self.sm.seed_version(name, seed.encode(), self.clock.now() - age)
        return name

    # -- inspection for assertions (no port calls, no faults) ----------------------------------

    def secret(self, name: str) -> StoredSecret:
        return self.sm.secrets[self.sm.canonical(name)]

    def version_problem(self, name: str, number: int, spec: GeneratorSpec | None = None) -> str | None:
        """Why version ``number`` is not a valid, usable credential (None when it is)."""
        secret = self.secret(name)
        version = secret.versions.get(number)
        if version is None or version.state is not VersionState.ENABLED or version.payload is None:
            return f"version {number} is not enabled"
        email = secret.annotations.get("gatehouse-service-account")
        if email is None:
            try:
                text = version.payload.decode("ascii")
            except UnicodeDecodeError:
                return f"version {number} is not ASCII"
            return nonconformance(text, spec or GeneratorSpec(length=len(text))) if spec else None
        try:
            info = json.loads(version.payload)
        except ValueError:
            return f"version {number} is not a key file"
        key = self.iam.keys.get(email, {}).get(info["private_key_id"])
        if info["client_email"] != email:
            return f"version {number} holds a key of another account"
        if key is None:
            return f"the key of version {number} does not exist"
        if key.disabled:
            return f"the key of version {number} is disabled"
        if key.valid_before is not None and key.valid_before <= self.clock.now():
            return f"the key of version {number} has expired"
        return None

    def invariant_problems(
        self, name: str, spec: GeneratorSpec | None = None, *, untested_latest: bool = True
    ) -> list[str]:
        """The safety invariants, reading as consumers do: ``current`` (once set) is a valid
        credential; ``latest`` (the highest-numbered version, whatever its state) can be read and is
        a valid credential; the account never has more than 10 keys.

        ``untested_latest``: ``latest`` may be invalid while it names the version an in-flight
        rotation stored and has not tested yet (``pending``, or a version above the record's base
        before ``pending`` is set), which is what a rejected test is about; it must still be
        readable. With False it must be valid at every moment."""
        secret = self.secret(name)
        problems = []
        current = secret.aliases.get("current")
        if current is not None and (problem := self.version_problem(name, current, spec)):
            problems.append(f"current: {problem}")
        if secret.versions:
            try:
                latest = self.sm.access(name, "latest").number
            except PermanentError as exc:
                problems.append(f"latest cannot be read: {exc}")
            else:
                problem = self.version_problem(name, latest, spec)
                if problem and not (untested_latest and self._untested(secret, latest)):
                    problems.append(f"latest (version {latest}): {problem}")
        email = secret.annotations.get("gatehouse-service-account")
        if email is not None and len(self.iam.keys.get(email, {})) > KEY_LIMIT:
            problems.append(f"{email} has {len(self.iam.keys[email])} keys")
        return problems

    @staticmethod
    def _untested(secret: StoredSecret, number: int) -> bool:
        record = read_state(secret.annotations).record
        if record is None or record.tested is not None:
            return False
        pending = secret.aliases.get("pending")
        return number == pending if pending is not None else number > record.base
