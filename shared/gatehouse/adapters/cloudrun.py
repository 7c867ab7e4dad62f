"""Cloud Run Admin API v2 through the official google-cloud-run client (REST transport).

Services come back as v2 REST JSON dicts (camelCase), the same shape ``gatehouse render`` reads,
so the pure layers never see protobuf types. IAM changes are read-modify-write with the policy's
etag; a concurrent writer makes the write fail with ABORTED and we read again.

Policies are read with ``options.requestedPolicyVersion=3``: below 3, IAM renders conditional
bindings without their conditions (role ``..._withcond_<hash>``), and writing that back fails or
loses them. Conditional bindings are left as they are, and a policy that has any is written back
as version 3. Only gatehouse's own member of the unconditional ``roles/run.invoker`` binding is
ever added or removed.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from google.auth.credentials import Credentials
from google.cloud import run_v2
from google.iam.v1 import iam_policy_pb2, options_pb2, policy_pb2
from google.protobuf.json_format import MessageToDict

from gatehouse.adapters.gapic import call, raise_mapped, rest_client
from gatehouse.adapters.http import retrying
from gatehouse.errors import ConflictError, NotFoundError, TransientError

T = TypeVar("T")
INVOKER_ROLE = "roles/run.invoker"
POLICY_VERSION = 3  # the only version that carries conditional role bindings


class CloudRunClient:
    """The ``gatehouse.ports.CloudRunApi``."""

    def __init__(
        self,
        *,
        endpoint: str | None = None,
        credentials: Credentials | None = None,
        anonymous: bool = False,
        retry_attempts: int = 5,
        retry_max_wait: float = 20.0,
        timeout: float = 30.0,
        page_size: int = 500,
    ) -> None:
        self.client = rest_client(
            run_v2.ServicesClient, endpoint=endpoint, credentials=credentials, anonymous=anonymous
        )
        self.retry = retrying(retry_attempts, retry_max_wait)
        self.timeout = timeout
        self.page_size = page_size

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        return call(self.retry, what, fn)

    @staticmethod
    def service_name(project: str, region: str, name: str) -> str:
        return f"projects/{project}/locations/{region}/services/{name}"

    def get_service(self, project: str, region: str, name: str) -> dict[str, Any] | None:
        full = self.service_name(project, region, name)
        try:
            service = self._call(
                f"get service {full}", lambda: self.client.get_service(name=full, timeout=self.timeout)
            )
        except NotFoundError:
            return None
        return _to_dict(service)

    def list_services(self, project: str, region: str) -> Iterator[list[dict[str, Any]]]:
        """Yield one list per page: a sweep costs one call per page, never one per service."""
        parent = f"projects/{project}/locations/{region}"
        token = ""
        while True:
            request = run_v2.ListServicesRequest(parent=parent, page_size=self.page_size, page_token=token)
            page = self._call(f"list services in {parent}", functools.partial(self._first_page, request))
            yield [_to_dict(s) for s in page.services]
            token = page.next_page_token
            if not token:
                return

    def _first_page(self, request: run_v2.ListServicesRequest) -> run_v2.ListServicesResponse:
        # one HTTP call: the pager holds the first page already; we page ourselves so each call retries
        pager = self.client.list_services(request=request, timeout=self.timeout)
        return next(iter(pager.pages))

    def add_invoker(self, project: str, region: str, name: str, member: str) -> bool:
        return self._edit_invokers(project, region, name, member, add=True)

    def remove_invoker(self, project: str, region: str, name: str, member: str) -> bool:
        return self._edit_invokers(project, region, name, member, add=False)

    def has_invoker(self, project: str, region: str, name: str, member: str) -> bool:
        """One read: does ``member`` hold the unconditional ``roles/run.invoker`` binding?"""
        policy = self._get_policy(self.service_name(project, region, name))
        return any(
            b.role == INVOKER_ROLE and not b.HasField("condition") and member in b.members
            for b in policy.bindings
        )

    def _edit_invokers(self, project: str, region: str, name: str, member: str, *, add: bool) -> bool:
        resource = self.service_name(project, region, name)
        for _ in range(5):
            policy = self._get_policy(resource)
            if not _edit_policy(policy, member, add=add):
                return False
            try:
                request = iam_policy_pb2.SetIamPolicyRequest(resource=resource, policy=policy)
                self._call(
                    f"set IAM policy of {resource}",
                    functools.partial(self.client.set_iam_policy, request=request, timeout=self.timeout),
                )
                return True
            except ConflictError:
                continue  # someone else changed the policy between our read and write: read again
        raise TransientError(f"IAM policy of {resource} kept changing under us; will retry")

    def _get_policy(self, resource: str) -> policy_pb2.Policy:
        request = iam_policy_pb2.GetIamPolicyRequest(
            resource=resource, options=options_pb2.GetPolicyOptions(requested_policy_version=POLICY_VERSION)
        )
        return self._call(
            f"get IAM policy of {resource}",
            lambda: self.client.get_iam_policy(request=request, timeout=self.timeout),
        )


def _edit_policy(policy: policy_pb2.Policy, member: str, *, add: bool) -> bool:
    """Add or remove ``member`` from the unconditional invoker binding; True if the policy changed."""
    for binding in policy.bindings:
        if binding.role == INVOKER_ROLE and not binding.HasField("condition"):
            if add:
                if member in binding.members:
                    return False
                binding.members.append(member)
                return True
            if member not in binding.members:
                return False
            binding.members.remove(member)
            if not binding.members:
                policy.bindings.remove(binding)
            _set_version(policy)
            return True
    if not add:
        return False
    policy.bindings.add(role=INVOKER_ROLE, members=[member])
    _set_version(policy)
    return True


def _set_version(policy: policy_pb2.Policy) -> None:
    """Conditional bindings need version 3 on every write of the policy (IAM refuses otherwise)."""
    if any(b.HasField("condition") for b in policy.bindings):
        policy.version = POLICY_VERSION


def _to_dict(service: run_v2.Service) -> dict[str, Any]:
    return MessageToDict(run_v2.Service.pb(service))  # type: ignore[no-any-return]


class CloudRunJobs:
    """Starts Cloud Run job executions (``gatehouse.ports.JobLauncher``)."""

    def __init__(
        self,
        *,
        endpoint: str | None = None,
        credentials: Credentials | None = None,
        anonymous: bool = False,
        timeout: float = 30.0,
    ) -> None:
        self.client = rest_client(
            run_v2.JobsClient, endpoint=endpoint, credentials=credentials, anonymous=anonymous
        )
        self.timeout = timeout

    def run_job(self, job: str, env: dict[str, str]) -> str:
        """Start ``job`` with extra environment; returns the execution's name without waiting for it."""
        overrides = run_v2.RunJobRequest.Overrides(
            container_overrides=[
                run_v2.RunJobRequest.Overrides.ContainerOverride(
                    env=[run_v2.EnvVar(name=k, value=v) for k, v in sorted(env.items())]
                )
            ]
        )
        try:
            operation = self.client.run_job(
                request=run_v2.RunJobRequest(name=job, overrides=overrides), timeout=self.timeout
            )
        except Exception as exc:
            raise_mapped(exc, f"run job {job}")
        execution = operation.metadata
        return (
            str(execution.name) if execution is not None and execution.name else str(operation.operation.name)
        )
