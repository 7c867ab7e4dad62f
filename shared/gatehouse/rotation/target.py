"""The target contract: which Secret Manager secrets gatehouse rotates, and how.

A secret opts in with a label; its annotations say what to rotate and on which schedule. Secret
Manager annotation keys may not contain ``/`` (1-63 characters, alphanumeric at both ends, ``-_.``
inside), so the keys use a ``gatehouse-`` prefix like the labels do.

=========  ===============================  =====================================  ============
where      key                              value                                  default
=========  ===============================  =====================================  ============
label      ``gatehouse-rotate``             ``sa-key`` | ``generated``             (opt-in)
annot.     ``gatehouse-service-account``    e-mail of the account whose key the    required for
                                            secret holds                           ``sa-key``
annot.     ``gatehouse-rotation-period``    age of ``current`` at which a new one  ``90d``
                                            is due (``<n>m|h|d|w``, >= ``1d``)
annot.     ``gatehouse-disable-after``      grace 1: the old credential stays      ``7d``
                                            enabled this long after the new one
                                            became ``current``
annot.     ``gatehouse-delete-after``       grace 2: then the old key is deleted   ``30d``
                                            and its version destroyed (>= grace 1)
annot.     ``gatehouse-length``             16..4096 characters                    ``32``
annot.     ``gatehouse-alphabet``           ``alnum`` | ``hex`` | ``base64url`` |  ``alnum``
                                            ``ascii-printable``
annot.     ``gatehouse-format``             ``token`` | ``password`` (at least     ``token``
                                            one character of every class)
annot.     ``gatehouse-state-*``            written by gatehouse; never edit       --
=========  ===============================  =====================================  ============

The generator keys are for ``generated`` secrets only and ``gatehouse-service-account`` for
``sa-key`` only; a key in the wrong place, an unknown ``gatehouse-*`` key (a typo such as
``gatehouse-rotation-peroid``), a malformed value, a generator spec under 128 bits of entropy or a
delete grace so long that retired keys would crowd the service account's 10 key slots fails that
target with a reason naming the key. Other targets are not affected.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from gatehouse.errors import InputError
from gatehouse.rotation.generate import Alphabet, Format, GeneratorSpec
from gatehouse.rotation.settings import RotationSettings, format_duration, parse_duration

ROTATE_LABEL = "gatehouse-rotate"
LIST_FILTER = f"labels.{ROTATE_LABEL}:*"

SERVICE_ACCOUNT = "gatehouse-service-account"
ROTATION_PERIOD = "gatehouse-rotation-period"
DISABLE_AFTER = "gatehouse-disable-after"
DELETE_AFTER = "gatehouse-delete-after"
LENGTH = "gatehouse-length"
ALPHABET = "gatehouse-alphabet"
FORMAT = "gatehouse-format"
STATE_PREFIX = "gatehouse-state-"

_GENERATOR_KEYS = (LENGTH, ALPHABET, FORMAT)
_CONFIG_KEYS = frozenset({SERVICE_ACCOUNT, ROTATION_PERIOD, DISABLE_AFTER, DELETE_AFTER, *_GENERATOR_KEYS})
MAX_PERIOD = timedelta(days=3650)

# user-managed accounts: <id>@<project>.iam.gserviceaccount.com; App Engine and Compute defaults
_USER_SA = re.compile(
    r"^[a-z][a-z0-9-]{4,28}[a-z0-9]@([a-z][a-z0-9-]{4,28}[a-z0-9])\.iam\.gserviceaccount\.com$"
)
_APPSPOT_SA = re.compile(r"^([a-z][a-z0-9-]{4,28}[a-z0-9])@appspot\.gserviceaccount\.com$")
_COMPUTE_SA = re.compile(r"^([0-9]{1,19})-compute@developer\.gserviceaccount\.com$")
_SERVICE_AGENT = re.compile(r"@(gcp-sa-[a-z0-9-]+|cloudservices|cloudbuild)\.")
_SECRET_NAME = re.compile(r"^projects/[^/]+/secrets/[A-Za-z0-9_-]{1,255}$")


class Kind(StrEnum):
    SA_KEY = "sa-key"
    GENERATED = "generated"


class TargetError(InputError):
    """The secret's labels or annotations do not form a valid target."""


@dataclass(frozen=True)
class Target:
    secret: str  # projects/P/secrets/S
    kind: Kind
    rotation_period: timedelta
    disable_after: timedelta
    delete_after: timedelta
    service_account: str | None = None  # sa-key
    account_project: str | None = None  # the project (id or number) the account lives in
    generator: GeneratorSpec | None = None  # generated

    def describe(self) -> str:
        what = self.service_account if self.kind is Kind.SA_KEY else "generated value"
        return (
            f"{self.kind} ({what}); rotate every {format_duration(self.rotation_period)}, "
            f"disable old after {format_duration(self.disable_after)}, "
            f"delete after {format_duration(self.delete_after)}"
        )


def is_target(labels: Mapping[str, str]) -> bool:
    return ROTATE_LABEL in labels


def account_project(email: str) -> str:
    """The project a service account lives in; ValueError for accounts without user-managed keys."""
    if _SERVICE_AGENT.search(email):
        raise ValueError(f"{email} is a Google-managed service agent; it has no user-managed keys")
    for pattern in (_USER_SA, _APPSPOT_SA, _COMPUTE_SA):
        match = pattern.fullmatch(email)
        if match:
            return match[1]
    raise ValueError(
        f"{email!r} is not a service account e-mail (NAME@PROJECT.iam.gserviceaccount.com, "
        "PROJECT@appspot.gserviceaccount.com or NUMBER-compute@developer.gserviceaccount.com)"
    )


def parse_target(
    secret: str, labels: Mapping[str, str], annotations: Mapping[str, str], settings: RotationSettings
) -> Target:
    """Validate the contract; raise TargetError listing every problem."""
    problems: list[str] = []
    if not _SECRET_NAME.fullmatch(secret):
        problems.append(f"{secret!r} is not projects/P/secrets/S")
    raw_kind = labels.get(ROTATE_LABEL)
    try:
        kind = Kind(raw_kind or "")
    except ValueError:
        raise TargetError(
            f"label {ROTATE_LABEL}={raw_kind!r}: expected one of {', '.join(k.value for k in Kind)}"
        ) from None

    unknown = sorted(
        k
        for k in annotations
        if k.startswith("gatehouse-") and k not in _CONFIG_KEYS and not k.startswith(STATE_PREFIX)
    )
    problems += [f"unknown annotation {k} (known: {', '.join(sorted(_CONFIG_KEYS))})" for k in unknown]

    def duration(key: str, default: timedelta) -> timedelta:
        raw = annotations.get(key)
        if raw is None:
            return default
        try:
            return parse_duration(raw)
        except ValueError as exc:
            problems.append(f"annotation {key}: {exc}")
            return default

    period = duration(ROTATION_PERIOD, settings.rotation_period)
    disable_after = duration(DISABLE_AFTER, settings.disable_after)
    delete_after = duration(DELETE_AFTER, settings.delete_after)
    if not timedelta(days=1) <= period <= MAX_PERIOD:
        problems.append(f"annotation {ROTATION_PERIOD}: must be between 1d and 3650d (the job runs daily)")
    if delete_after < disable_after:
        problems.append(
            f"annotation {DELETE_AFTER} ({format_duration(delete_after)}) must not be shorter than "
            f"{DISABLE_AFTER} ({format_duration(disable_after)})"
        )
    if delete_after > MAX_PERIOD:
        problems.append(f"annotation {DELETE_AFTER}: at most 3650d")

    service_account = project = None
    generator = None
    if kind is Kind.SA_KEY:
        problems += [
            f"annotation {k} applies to generated secrets only" for k in _GENERATOR_KEYS if k in annotations
        ]
        service_account = annotations.get(SERVICE_ACCOUNT, "").strip()
        if not service_account:
            problems.append(f"annotation {SERVICE_ACCOUNT} is required for {ROTATE_LABEL}=sa-key")
        else:
            try:
                project = account_project(service_account)
            except ValueError as exc:
                problems.append(f"annotation {SERVICE_ACCOUNT}: {exc}")
        # retired keys live until delete-after; with current, pending and the free slots they must fit
        room = settings.key_limit - settings.min_free_slots - 1
        if period >= timedelta(days=1) and math.ceil(delete_after / period) > room:
            problems.append(
                f"annotation {DELETE_AFTER} ({format_duration(delete_after)}) keeps up to "
                f"{math.ceil(delete_after / period)} retired keys at a {format_duration(period)} period; "
                f"the account's {settings.key_limit} key slots allow {room}"
            )
    else:
        if SERVICE_ACCOUNT in annotations:
            problems.append(f"annotation {SERVICE_ACCOUNT} applies to {ROTATE_LABEL}=sa-key only")
        generator = _generator(annotations, problems)

    if problems:
        raise TargetError("; ".join(problems))
    return Target(
        secret=secret,
        kind=kind,
        rotation_period=period,
        disable_after=disable_after,
        delete_after=delete_after,
        service_account=service_account,
        account_project=project,
        generator=generator,
    )


def _generator(annotations: Mapping[str, str], problems: list[str]) -> GeneratorSpec:
    spec = GeneratorSpec()
    length, alphabet, fmt = spec.length, spec.alphabet, spec.format
    if LENGTH in annotations:
        raw = annotations[LENGTH].strip()
        if raw.isdigit() and len(raw) <= 5:
            length = int(raw)
        else:
            problems.append(f"annotation {LENGTH}: {raw!r} is not a whole number")
    if ALPHABET in annotations:
        try:
            alphabet = Alphabet(annotations[ALPHABET].strip())
        except ValueError:
            problems.append(
                f"annotation {ALPHABET}: {annotations[ALPHABET]!r} is not one of "
                + ", ".join(a.value for a in Alphabet)
            )
    if FORMAT in annotations:
        try:
            fmt = Format(annotations[FORMAT].strip())
        except ValueError:
            problems.append(
                f"annotation {FORMAT}: {annotations[FORMAT]!r} is not one of "
                + ", ".join(f.value for f in Format)
            )
    spec = GeneratorSpec(length=length, alphabet=alphabet, format=fmt)
    problems += [f"generator: {p}" for p in spec.problems()]
    return spec
