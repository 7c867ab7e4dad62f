"""Organization policies that govern service-account keys (``OrgPolicies``), Org Policy API v2.

Reading the effective policy before creating a key lets the job refuse with the constraint's name
and advice (workload identity, impersonation) instead of meeting IAM's bare FAILED_PRECONDITION,
and tells it when keys expire on their own (``iam.serviceAccountKeyExpiryHours``). Three
``projects/P/policies/C:getEffectivePolicy`` reads per project (the executor caches them per run):

- ``iam.managed.disableServiceAccountKeyCreation`` and ``iam.disableServiceAccountKeyCreation``:
  boolean; enforced when an unconditional rule says ``enforce: true``. Rules with a ``condition``
  (tags) are ignored: whether they match cannot be told from here, and IAM enforces them anyway
  at create time, which the executor reports as the same refusal;
- ``iam.serviceAccountKeyExpiryHours``: list constraint; ``allowedValues`` like ``"24h"`` (``"24"``
  is accepted too; the documentation is not explicit about the format), the smallest wins.

Why REST over google-auth's AuthorizedSession instead of ``google-cloud-org-policy``: one GET per
constraint does not justify a new pinned dependency (``python -X importtime``: importing
``google.cloud.orgpolicy_v2`` alone takes ~180 ms, this module ~130 ms, mostly google-auth and
requests that every adapter loads anyway; after the Secret Manager client: ~9 ms vs ~1 ms), and the
same session code already serves IAM. The reader is optional: without
``orgpolicy.policy.get`` (``roles/orgpolicy.policyViewer``) a read answers 403; by default that
counts as "not enforced" (a warning is logged) and IAM's own FAILED_PRECONDITION at create time
still ends the rotation as a refusal (the executor maps it). ``NoOrgPolicies`` is the port for
installations that turn the reader off.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from google.auth.credentials import Credentials

from gatehouse.adapters.http import GoogleRest
from gatehouse.errors import NotFoundError, PermanentError
from gatehouse.logging import event, get_logger
from gatehouse.rotation.ports import KeyPolicy

CREATION_CONSTRAINTS = (
    "iam.managed.disableServiceAccountKeyCreation",
    "iam.disableServiceAccountKeyCreation",
)
EXPIRY_CONSTRAINT = "iam.serviceAccountKeyExpiryHours"
_HOURS = re.compile(r"^\s*([0-9]{1,6})\s*h?\s*$")
_log = get_logger("orgpolicy")


def _unconditional(policy: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    spec = policy.get("spec") or {}
    rules = spec.get("rules") if isinstance(spec, Mapping) else None
    return [r for r in rules or [] if isinstance(r, Mapping) and not r.get("condition")]


def enforced(policy: Mapping[str, Any]) -> bool:
    """A boolean constraint's effective policy enforces it."""
    return any(r.get("enforce") is True for r in _unconditional(policy))


def expiry_hours(policy: Mapping[str, Any]) -> int | None:
    """The hours ``iam.serviceAccountKeyExpiryHours`` allows (the smallest), None when unset."""
    hours = []
    for rule in _unconditional(policy):
        values = rule.get("values") or {}
        for value in values.get("allowedValues") or [] if isinstance(values, Mapping) else []:
            match = _HOURS.fullmatch(str(value))
            if match and int(match[1]) > 0:
                hours.append(int(match[1]))
    return min(hours) if hours else None


class OrgPolicyReader:
    """The ``gatehouse.rotation.ports.OrgPolicies`` over Org Policy API v2 REST."""

    def __init__(
        self,
        *,
        endpoint: str = "https://orgpolicy.googleapis.com",
        credentials: Credentials | None = None,
        anonymous: bool = False,
        fail_when_unreadable: bool = False,
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
        self.fail_when_unreadable = fail_when_unreadable

    def _effective(self, project: str, constraint: str) -> Mapping[str, Any]:
        name = f"projects/{project}/policies/{constraint}"
        try:
            doc = self.rest.request(
                "GET", f"/v2/{quote(name, safe='/')}:getEffectivePolicy", f"read the effective policy {name}"
            )
        except NotFoundError:
            return {}  # the constraint does not exist here: nothing enforced
        except PermanentError as exc:
            if self.fail_when_unreadable or exc.status not in (400, 403):
                raise
            event(
                _log,
                "organization policy unreadable; relying on IAM to refuse key creation",
                level=logging.WARNING,
                policy=name,
                error=str(exc),
            )
            return {}
        return doc if isinstance(doc, Mapping) else {}

    def key_policy(self, project: str) -> KeyPolicy:
        blocked = next((c for c in CREATION_CONSTRAINTS if enforced(self._effective(project, c))), None)
        return KeyPolicy(
            creation_blocked_by=blocked,
            expiry_hours=expiry_hours(self._effective(project, EXPIRY_CONSTRAINT)),
        )

    def close(self) -> None:
        self.rest.close()


class NoOrgPolicies:
    """The ``OrgPolicies`` port when the reader is off: nothing is known to be enforced, and IAM's
    FAILED_PRECONDITION at create time is what reports a blocking policy."""

    def key_policy(self, project: str) -> KeyPolicy:
        return KeyPolicy()
