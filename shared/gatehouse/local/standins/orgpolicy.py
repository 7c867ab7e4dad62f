"""Stand-in for the Organization Policy API v2 (discovery ``orgpolicy.v2``): getEffectivePolicy only.

The rotation job reads three constraints before it creates a key, so it can refuse with a clear
reason instead of meeting IAM's bare FAILED_PRECONDITION: ``iam.disableServiceAccountKeyCreation``
and ``iam.managed.disableServiceAccountKeyCreation`` (boolean: ``spec.rules[].enforce``) and
``iam.serviceAccountKeyExpiryHours`` (list: ``spec.rules[].values.allowedValues``, e.g. ``["24h"]``).
Any other constraint answers an unenforced boolean policy.

The effective policy per project is set with ``POST /_standin/orgpolicy/policy``
``{"project": "p", "creation_blocked_by": "iam.disableServiceAccountKeyCreation"|null,
"expiry_hours": 24|null}`` (the body of the IAM stand-in's ``/_standin/iam/policy``). In-process,
``start(iam=<the IAM stand-in>)`` reads and writes the IAM stand-in's policies instead, so the
policy the job reads and the one IAM enforces are one and the same.

Run: ``python -m gatehouse.local.standins.orgpolicy --port 8606 [--state-file F]``.
"""

from __future__ import annotations

import sys
from typing import Any

from werkzeug.wrappers import Request

from gatehouse.local.standins.iam import BLOCKING_CONSTRAINTS, Iam
from gatehouse.local.standins.server import (
    ApiError,
    Call,
    Handle,
    StandIn,
    base_parser,
    handles,
    run_forever,
    serve,
)

EXPIRY = "iam.serviceAccountKeyExpiryHours"


class OrgPolicy(StandIn):
    API = "orgpolicy.v2"
    NAME = "orgpolicy"

    def __init__(
        self, *, iam: Iam | None = None, state_file: str | None = None, check_fields: bool = False
    ) -> None:
        self.iam = iam
        super().__init__(state_file=state_file, check_fields=check_fields)
        self.extra_routes[("POST", "/_standin/orgpolicy/policy")] = self._set_policy

    def initial_state(self) -> dict[str, Any]:
        return {"policies": {}}

    def policy(self, project: str) -> dict[str, Any]:
        if self.iam is not None:
            return self.iam.policy(project)
        return dict(
            self.state["policies"].get(project) or {"creation_blocked_by": None, "expiry_hours": None}
        )

    def set_policy(self, project: str, creation_blocked_by: str | None, expiry_hours: int | None) -> None:
        if self.iam is not None:
            self.iam.set_policy(project, creation_blocked_by, expiry_hours)
            return
        if creation_blocked_by is not None and creation_blocked_by not in BLOCKING_CONSTRAINTS:
            raise ApiError(
                400, f"creation_blocked_by must be one of {', '.join(BLOCKING_CONSTRAINTS)} or null"
            )
        if expiry_hours is not None and (not isinstance(expiry_hours, int) or expiry_hours <= 0):
            raise ApiError(400, "expiry_hours must be a positive integer or null")
        self.state["policies"][project] = {
            "creation_blocked_by": creation_blocked_by,
            "expiry_hours": expiry_hours,
        }
        self.changed()

    def _set_policy(self, request: Request) -> dict[str, Any]:
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or not isinstance(body.get("project"), str):
            raise ApiError(400, 'body must be {"project", "creation_blocked_by", "expiry_hours"}')
        self.set_policy(body["project"], body.get("creation_blocked_by"), body.get("expiry_hours"))
        return {"project": body["project"], **self.policy(body["project"])}

    @handles("GET", "orgpolicy.projects.policies.getEffectivePolicy")
    def get_effective_policy(self, call: Call) -> dict[str, Any]:
        name = call.params["name"]
        project, constraint = name.split("/")[1], name.rsplit("/", 1)[-1]
        policy = self.policy(project)
        if constraint == EXPIRY:
            hours = policy["expiry_hours"]
            rule: dict[str, Any] = (
                {"values": {"allowedValues": [f"{hours}h"]}} if hours else {"allowAll": True}
            )
        else:
            rule = {"enforce": policy["creation_blocked_by"] == constraint}
        return {"name": name, "spec": {"rules": [rule]}}


def start(port: int = 0, **opts: Any) -> Handle:
    """Serve an :class:`OrgPolicy` stand-in in this process (``opts`` as its constructor takes)."""
    return serve(OrgPolicy(**opts), port)


def main(argv: list[str] | None = None) -> None:
    args = base_parser("Organization Policy API v2 stand-in (getEffectivePolicy)").parse_args(argv)
    run_forever(OrgPolicy(state_file=args.state_file, check_fields=args.check_fields), args.port)


if __name__ == "__main__":
    main(sys.argv[1:])
