"""The names a person types, resolved to the full resource names gatehouse works with.

A bare service name is enough when the settings sweep one project and one region; a bare secret id
is enough when rotation searches one project. Anything else must be the full form, and the error
says which form and why.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from gatehouse.errors import InputError

SERVICE_FORM = "projects/P/locations/R/services/S"
SECRET_FORM = "projects/P/secrets/S"  # noqa: S105 (a name pattern)

# a project id or number, a region
_SEGMENT = re.compile(r"^[a-z0-9][a-z0-9.:-]{0,62}$")
# Cloud Run service names are lowercase DNS labels
_SERVICE = re.compile(r"^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")
# Secret Manager secret ids
_SECRET_ID = re.compile(r"^[A-Za-z0-9_-]{1,255}$")


def service_key(name: str, projects: Sequence[str], regions: Sequence[str]) -> str:
    """``projects/P/locations/R/services/S`` for a full name, or for a bare ``S`` when
    ``projects`` x ``regions`` is a single place."""
    key, exact = service_selector(name, projects, regions)
    if not exact:
        raise InputError(f"{name!r} names more than one service: give {SERVICE_FORM}")
    return key


def service_selector(name: str, projects: Sequence[str], regions: Sequence[str]) -> tuple[str, bool]:
    """What ``gatehouse status NAME`` shows: ``(key, True)`` for one service; ``(prefix, False)``
    for every service of ``projects/P`` or ``projects/P/locations/R``."""
    text = name.strip()
    parts = text.split("/")
    if parts[0] == "projects":
        if len(parts) == 2 and _SEGMENT.match(parts[1]):
            return text + "/", False
        if len(parts) == 4 and parts[2] == "locations" and all(_SEGMENT.match(p) for p in parts[1::2]):
            return text + "/", False
        if (
            len(parts) == 6
            and (parts[2], parts[4]) == ("locations", "services")
            and all(_SEGMENT.match(p) for p in (parts[1], parts[3]))
            and _SERVICE.match(parts[5])
        ):
            return text, True
        raise InputError(f"{name!r} is not a Cloud Run service name: expected {SERVICE_FORM}")
    if len(parts) != 1 or not _SERVICE.match(text):
        raise InputError(
            f"{name!r} is not a Cloud Run service name: expected {SERVICE_FORM} "
            "(or a bare service name when GATEHOUSE_PROJECTS and GATEHOUSE_REGIONS name one of each)"
        )
    if len(projects) == 1 and len(regions) == 1:
        return f"projects/{projects[0]}/locations/{regions[0]}/services/{text}", True
    raise InputError(
        f"service {text!r} is ambiguous: GATEHOUSE_PROJECTS and GATEHOUSE_REGIONS name "
        f"{_count(projects, 'project')} and {_count(regions, 'region')}; give {SERVICE_FORM}"
    )


def secret_name(name: str, projects: Sequence[str], numbers: Mapping[str, str] | None = None) -> str:
    """``projects/P/secrets/S`` for a full name, or for a bare ``S`` when rotation searches one
    project (``GATEHOUSE_ROTATION_PROJECTS``, else ``GATEHOUSE_PROJECTS``).

    Secret Manager names secrets by project number; a project id with a known number
    (``numbers``, from ``GATEHOUSE_PROJECT_NUMBERS``) is replaced by it, so that the name is the one
    the rotation run lists (otherwise one secret would appear under two names)."""
    numbers = numbers or {}
    text = name.strip()
    parts = text.split("/")
    if parts[0] == "projects":
        if (
            len(parts) == 4
            and parts[2] == "secrets"
            and _SEGMENT.match(parts[1])
            and _SECRET_ID.match(parts[3])
        ):
            return f"projects/{numbers.get(parts[1], parts[1])}/secrets/{parts[3]}"
        raise InputError(f"{name!r} is not a secret name: expected {SECRET_FORM}")
    if len(parts) != 1 or not _SECRET_ID.match(text):
        raise InputError(
            f"{name!r} is not a secret name: expected {SECRET_FORM} "
            "(or a bare secret id when rotation searches one project)"
        )
    if len(projects) == 1:
        return f"projects/{numbers.get(projects[0], projects[0])}/secrets/{text}"
    raise InputError(
        f"secret {text!r} is ambiguous: rotation searches {_count(projects, 'project')} "
        f"(GATEHOUSE_ROTATION_PROJECTS, else GATEHOUSE_PROJECTS); give {SECRET_FORM}"
    )


def _count(items: Sequence[str], noun: str) -> str:
    if not items:
        return f"no {noun}"
    return f"{len(items)} {noun}{'s' if len(items) > 1 else ''} ({', '.join(items)})"
