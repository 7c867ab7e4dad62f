"""Stand-in for the Cloud Run Admin API v2 (discovery document ``run.v2``), services only.

Cloud Run has no emulator. Production code lists and reads services, grants ``roles/run.invoker``
and reacts to the Admin Activity audit logs of service changes, all through the official
``google.cloud.run_v2.ServicesClient`` (REST transport). This stand-in answers that client with
Google's JSON: services carry the output fields the real API fills (uid, generation as an int64
string, uri/urls, conditions, revisions, etag), create/update/delete return
``google.longrunning.Operation`` already ``done`` with typed ``metadata`` and ``response``, and IAM
policies use etags for optimistic concurrency (stale etag -> 409 ABORTED).

Run: ``python -m gatehouse.local.standins.cloudrun --port 8602 [--state-file F]
[--audit-topic projects/P/topics/T] [--project-number-map my-proj=123456789012]``; in-process:
``start(port=0, audit_topic=..., project_numbers={...})`` returns a handle with ``.url``/``.stop()``.
Point the client at it with ``client_options={"api_endpoint": handle.url}`` and
``AnonymousCredentials()``; the ``http://`` in the endpoint selects plain HTTP.

Test hooks:

- Audit logs: with ``--audit-topic``, every successful create/update/delete publishes what a Cloud
  Logging sink would: two LogEntry JSON messages (``operation.first`` with the request, then
  ``operation.last`` with the resulting Service), attribute ``logging.googleapis.com/timestamp``.
  Publishing goes through ``google.cloud.pubsub_v1`` (so ``PUBSUB_EMULATOR_HOST`` selects the
  emulator) from a background thread that is flushed on stop.
- ``POST /_standin/cloudrun/audit`` publishes the LogEntry (or list of entries) in the body as
  given, e.g. hand-written v1 ``ReplaceService`` entries.
- Service traffic: a request whose ``Host`` is one of a service's ``*.run.app`` hosts is answered
  as that service would answer it (``GATEHOUSE_SERVICE_ENDPOINT`` sends gatehouse's spec reads
  here). Like Cloud Run, it wants ``Authorization: Bearer <Google ID token>`` whose ``aud`` is the
  service URL and whose ``email`` holds ``roles/run.invoker`` in the service's IAM policy (401/403
  otherwise; the token's signature is not checked). ``POST /_standin/cloudrun/content``
  ``{"service": "projects/P/locations/R/services/S", "path": "/openapi.json", "body": "...",
  "content_type": "application/json", "status": 200}`` sets what a path answers (404 otherwise).
  Counted in the stats as ``GET (service traffic)``.
- Plus the base hooks (stats, faults, health) described in :mod:`gatehouse.local.standins.server`.

Project numbers (for ``https://{service}-{number}.{region}.run.app``) come from
``--project-number-map`` or are derived deterministically from the project id.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import os
import queue
import re
import secrets
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from werkzeug.wrappers import Request, Response

from gatehouse.local.standins.cloudrun_jobs import JobsMixin
from gatehouse.local.standins.cloudrun_jobs_crud import JobsCrudMixin
from gatehouse.local.standins.server import (
    ApiError,
    Call,
    Handle,
    StandIn,
    base_parser,
    handles,
    page_of,
    run_forever,
    serve,
)

SERVICE_TYPE = "type.googleapis.com/google.cloud.run.v2.Service"
AUDIT_TYPE = "type.googleapis.com/google.cloud.audit.AuditLog"
SERVICE_ID = re.compile(r"^[a-z]([-a-z0-9]{0,47}[a-z0-9])?$")
LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")
RESERVED_ANNOTATIONS = (
    "run.googleapis.com",
    "cloud.googleapis.com",
    "serving.knative.dev",
    "autoscaling.knative.dev",
)
MEMBER = re.compile(
    r"^(allUsers|allAuthenticatedUsers|(user|serviceAccount|group|domain|deleted:\w+):\S+|principal(Set)?://\S+)$"
)
REGION_CODES = {
    "us-central1": "uc",
    "us-east1": "ue",
    "us-east4": "uk",
    "us-west1": "uw",
    "europe-west1": "ew",
    "europe-west2": "nw",
    "europe-west3": "ey",
    "europe-west4": "ez",
    "asia-east1": "de",
    "asia-northeast1": "an",
}
EMPTY_POLICY_ETAG = "ACAB"
LOWER = "abcdefghijklmnopqrstuvwxyz"
MAX_OPERATIONS = 500


def rfc3339(moment: datetime | None = None) -> str:
    return (moment or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _digest(*parts: str) -> bytes:
    return hashlib.sha256("/".join(parts).encode()).digest()


def _proto_descriptor(full_name: str) -> Any:
    """The protobuf descriptor of ``full_name`` if the Google client libraries are installed."""
    try:
        import google.cloud.run_v2  # registers the run.v2 messages
        import google.iam.v1.iam_policy_pb2  # noqa: F401
        from google.protobuf import descriptor_pool

        return descriptor_pool.Default().FindMessageTypeByName(full_name)
    except (ImportError, KeyError):
        return None


def enum_names(descriptor: Any, value: Any) -> Any:
    """``value`` with integer enum values replaced by their names. The GAPIC REST transport sends
    ``$alt=json;enum-encoding=int`` bodies; the state keeps the names every other client sees."""
    if descriptor is None or not isinstance(value, dict):
        return value
    out = {}
    for key, item in value.items():
        field = descriptor.fields_by_camelcase_name.get(key) or descriptor.fields_by_name.get(key)
        out[key] = item if field is None else _enum_field(field, item)
    return out


def _enum_field(field: Any, item: Any) -> Any:
    if field.message_type is not None:
        if field.message_type.GetOptions().map_entry:
            inner = field.message_type.fields_by_name["value"].message_type
            return {k: enum_names(inner, v) for k, v in item.items()} if inner else item
        if isinstance(item, list):
            return [enum_names(field.message_type, v) for v in item]
        return enum_names(field.message_type, item)
    if field.enum_type is not None:
        numbers = field.enum_type.values_by_number

        def name(v: Any) -> Any:
            return numbers[v].name if isinstance(v, int) and v in numbers else v

        return [name(v) for v in item] if isinstance(item, list) else name(item)
    return item


def _bearer_claims(header: str) -> dict[str, Any] | None:
    """The claims of a bearer JWT (not verified: the stand-in has no Google keys), or None."""
    scheme, _, token = header.partition(" ")
    parts = token.split(".")
    if scheme.lower() != "bearer" or len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError:
        return None
    return claims if isinstance(claims, dict) else None


def _split(name: str) -> tuple[str, str, str]:
    parts = name.split("/")
    return parts[1], parts[3], parts[5] if len(parts) > 5 else ""


def _conditional(bindings: Any) -> bool:
    return any(isinstance(b, dict) and b.get("condition") for b in bindings or [])


def _set_path(target: dict[str, Any], source: dict[str, Any], path: str) -> None:
    """Copy the field at dotted ``path`` from ``source`` to ``target`` (clear it if absent)."""
    *parents, leaf = path.split(".")
    for key in parents:
        source = source.get(key) or {}
        target = target.setdefault(key, {})
    if leaf in source:
        target[leaf] = copy.deepcopy(source[leaf])
    else:
        target.pop(leaf, None)


class CloudRun(JobsCrudMixin, JobsMixin, StandIn):
    API = "run.v2"
    NAME = "cloudrun"

    def __init__(
        self,
        *,
        audit_topic: str | None = None,
        project_numbers: dict[str, str] | None = None,
        principal: str = "developer@example.com",
        state_file: str | None = None,
        check_fields: bool = False,
        jobs: dict[str, str] | None = None,
        job_log_dir: str | None = None,
    ) -> None:
        self.jobs = dict(jobs or {})
        self.job_log_dir = Path(job_log_dir) if job_log_dir else None
        self._processes = {}
        self.audit_topic = audit_topic
        self.project_numbers = dict(project_numbers or {})
        self.principal = principal
        self.service_descriptor = _proto_descriptor("google.cloud.run.v2.Service")
        self.iam_descriptor = _proto_descriptor("google.iam.v1.SetIamPolicyRequest")
        self._audit_queue: queue.Queue[tuple[bytes, str] | None] = queue.Queue()
        self._audit_thread: threading.Thread | None = None
        super().__init__(state_file=state_file, check_fields=check_fields)
        self.extra_routes[("POST", "/_standin/cloudrun/audit")] = self._publish_raw
        self.extra_routes[("POST", "/_standin/cloudrun/content")] = self._set_content

    # -- service traffic ------------------------------------------------------------------------------

    def dispatch(self, request: Request) -> Response:
        host = (request.host or "").rsplit(":", 1)[0].lower()
        if host.endswith(".run.app"):
            return self._traffic(host, request)
        return super().dispatch(request)

    def _set_content(self, request: Request) -> dict[str, Any]:
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or not isinstance(body.get("service"), str):
            raise ApiError(400, "body must be {service, path, body, content_type?, status?}")
        path = str(body.get("path") or "")
        if not path.startswith("/"):
            raise ApiError(400, "path must start with '/'")
        answer = {
            "body": str(body.get("body") or ""),
            "content_type": str(body.get("content_type") or "application/json"),
            "status": int(body.get("status") or 200),
        }
        self.state.setdefault("content", {}).setdefault(body["service"], {})[path] = answer
        self.changed()
        return answer

    def _traffic(self, host: str, request: Request) -> Response:
        with self.lock:
            self.calls["GET (service traffic)"] += 1
            service = next(
                (
                    s
                    for s in self.state["services"].values()
                    if host in {u.split("//", 1)[-1] for u in [s.get("uri", ""), *s.get("urls", [])]}
                ),
                None,
            )
            if service is None:
                return Response("no such service\n", status=404, content_type="text/plain")
            urls = {service.get("uri", ""), *service.get("urls", [])}
            claims = _bearer_claims(request.headers.get("Authorization", ""))
            if claims is None or claims.get("aud") not in urls or int(claims.get("exp", 0)) < time.time():
                return Response("Unauthorized\n", status=401, content_type="text/plain")
            policy = self.state["iam"].get(service["name"]) or {}
            invokers = {
                member
                for binding in policy.get("bindings", [])
                if binding.get("role") == "roles/run.invoker" and not binding.get("condition")
                for member in binding.get("members", [])
            }
            if f"serviceAccount:{claims.get('email')}" not in invokers:
                return Response("Forbidden\n", status=403, content_type="text/plain")
            answer = self.state.get("content", {}).get(service["name"], {}).get(request.path)
        if answer is None:
            return Response("Not Found\n", status=404, content_type="text/plain")
        return Response(answer["body"], status=answer["status"], content_type=answer["content_type"])

    def initial_state(self) -> dict[str, Any]:
        # services/deleted: name -> Service JSON; iam: name -> Policy JSON; operations: name -> Operation;
        # revisions: revision name -> the template it was created from (without its name)
        return {"services": {}, "deleted": {}, "iam": {}, "operations": {}, "revisions": {}}

    # -- naming ---------------------------------------------------------------------------------

    def project_number(self, project: str) -> str:
        if project.isdigit():
            return project
        if project not in self.project_numbers:
            self.project_numbers[project] = str(10**11 + int.from_bytes(_digest(project)[:8]) % (9 * 10**11))
        return self.project_numbers[project]

    def _urls(self, project: str, region: str, service: str) -> tuple[str, list[str]]:
        project_hash = base64.b32encode(_digest(project)).decode().lower()[:10]
        code = REGION_CODES.get(region) or "".join(p[0] for p in region.split("-"))[:2]
        legacy = f"https://{service}-{project_hash}-{code}.a.run.app"
        return legacy, [f"https://{service}-{self.project_number(project)}.{region}.run.app", legacy]

    @staticmethod
    def _location(parent: str) -> tuple[str, str]:
        project, region, _ = _split(parent)
        if region == "-":
            raise ApiError(
                400, 'Location must be a valid Google Cloud region, and cannot be the "-" wildcard.'
            )
        return project, region

    def _existing(self, name: str) -> dict[str, Any]:
        service = self.state["services"].get(name)
        if service is None:
            project, region, sid = _split(name)
            raise ApiError(
                404,
                f"Resource '{sid}' of kind 'SERVICE' in region '{region}' in project '{project}' "
                "does not exist.",
                "NOT_FOUND",
            )
        return service  # type: ignore[no-any-return]

    # -- input ------------------------------------------------------------------------------------

    def _service_input(self, body: Any) -> dict[str, Any]:
        """The Service in a request body: enum names, only schema fields, output-only fields dropped."""
        if not isinstance(body, dict):
            raise ApiError(400, "Invalid JSON payload received. Expected an object for 'service'.")
        body = enum_names(self.service_descriptor, body)
        problems = self.api.check_fields("GoogleCloudRunV2Service", body)
        if problems:
            field, _, why = problems[0].partition(": ")
            message = (
                f"Invalid JSON payload received. Unknown name \"{field}\" at 'service': Cannot find field."
                if why == "not a field of the schema"
                else f"Invalid value at 'service.{field}': {why}"
            )
            raise ApiError(400, message)
        body = self.api.strip_read_only("GoogleCloudRunV2Service", body)
        for key, value in (body.get("labels") or {}).items():
            if not LABEL_KEY.match(key) or not LABEL_VALUE.match(str(value)):
                raise ApiError(
                    400, f"service.labels: invalid label {key}={value!r} (Google Cloud label rules)"
                )
        for where in (body, body.get("template") or {}):
            for key in where.get("annotations") or {}:
                if key.split("/")[0] in RESERVED_ANNOTATIONS and "/" in key:
                    raise ApiError(400, f"annotation {key!r}: system annotations are not supported in v2")
        return dict(body)

    @staticmethod
    def _require_template(service: dict[str, Any]) -> None:
        containers = (service.get("template") or {}).get("containers") or []
        if not containers:
            raise ApiError(400, "service.template.containers: at least one container is required")
        for i, container in enumerate(containers):
            if not container.get("image"):
                raise ApiError(400, f"service.template.containers[{i}].image: Required field is not set")

    # -- the output fields Cloud Run fills --------------------------------------------------------

    def _materialize(
        self, name: str, spec: dict[str, Any], previous: dict[str, Any] | None, new_revision: bool
    ) -> dict[str, Any]:
        project, region, sid = _split(name)
        now = rfc3339()
        generation = int(previous["generation"]) + 1 if previous else 1
        service = copy.deepcopy(spec)
        service["name"] = name
        service.setdefault("launchStage", "GA")
        service.setdefault("ingress", "INGRESS_TRAFFIC_ALL")
        template = service.setdefault("template", {})
        template.setdefault(
            "serviceAccount", f"{self.project_number(project)}-compute@developer.gserviceaccount.com"
        )
        template.setdefault("timeout", "300s")
        template.setdefault("maxInstanceRequestConcurrency", 80)
        for container in template.get("containers") or []:
            container.setdefault("ports", [{"name": "http1", "containerPort": 8080}])
            container.setdefault(
                "resources", {"limits": {"cpu": "1000m", "memory": "512Mi"}, "cpuIdle": True}
            )
        old_template = dict((previous or {}).get("template") or {})
        current = old_template.pop("revision", None)
        requested = template.pop("revision", None)
        changed = previous is None or new_revision or template != old_template
        if changed:
            suffix = secrets.choice(LOWER) + "".join(secrets.choice(LOWER + "0123456789") for _ in range(2))
            revision = requested or f"{sid}-{generation:05d}-{suffix}"
            if not revision.startswith(f"{sid}-"):
                raise ApiError(400, f"service.template.revision must start with '{sid}-'")
            self._check_revision_name(name, revision, template, old_template if revision == current else None)
        else:
            revision = current
        template["revision"] = revision
        service.setdefault("traffic", [{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 100}])
        legacy, urls = self._urls(project, region, sid)
        statuses = []
        for target in service["traffic"]:
            status = {k: target[k] for k in ("type", "revision", "percent", "tag") if k in target}
            if target.get("tag"):
                status["uri"] = legacy.replace("https://", f"https://{target['tag']}---", 1)
            statuses.append(status)
        revision_name = f"{name}/revisions/{revision}"
        ready_since = previous["terminalCondition"]["lastTransitionTime"] if previous and not changed else now
        service.update(
            {
                "uid": previous["uid"] if previous else str(uuid.uuid4()),
                "generation": str(generation),
                "observedGeneration": str(generation),
                "createTime": previous["createTime"] if previous else now,
                "updateTime": now,
                "creator": previous["creator"] if previous else self.principal,
                "lastModifier": self.principal,
                "uri": legacy,
                "urls": urls,
                "latestReadyRevision": revision_name,
                "latestCreatedRevision": revision_name,
                "trafficStatuses": statuses,
                "terminalCondition": {
                    "type": "Ready",
                    "state": "CONDITION_SUCCEEDED",
                    "lastTransitionTime": ready_since,
                },
                "conditions": [
                    {
                        "type": "RoutesReady",
                        "state": "CONDITION_SUCCEEDED",
                        "lastTransitionTime": ready_since,
                    },
                    {
                        "type": "ConfigurationsReady",
                        "state": "CONDITION_SUCCEEDED",
                        "lastTransitionTime": ready_since,
                    },
                ],
                "reconciling": False,
            }
        )
        tag = base64.b64encode(_digest(name, str(generation), now)).decode()[:43]
        service["etag"] = f'"{tag}"'
        return service

    def _check_revision_name(
        self, name: str, revision: str, template: dict[str, Any], current: dict[str, Any] | None
    ) -> None:
        """Cloud Run keeps every revision's template: a name that exists with another template is
        refused (409 ALREADY_EXISTS), unlike a stale etag (409 ABORTED)."""
        known = self.state.setdefault("revisions", {}).get(f"{name}/revisions/{revision}", current)
        if known is not None and known != template:
            raise ApiError(
                409,
                f"Revision named '{revision}' with different configuration already exists.",
                "ALREADY_EXISTS",
            )

    def _remember_revision(self, service: dict[str, Any]) -> None:
        template = dict(service.get("template") or {})
        revision = template.pop("revision", None)
        if revision:
            self.state.setdefault("revisions", {})[f"{service['name']}/revisions/{revision}"] = template

    def _operation(self, name: str, service: dict[str, Any], keep: bool) -> dict[str, Any]:
        project, region, _ = _split(name)
        op = {
            "name": f"projects/{project}/locations/{region}/operations/{uuid.uuid4()}",
            "metadata": {"@type": SERVICE_TYPE, **service},
            "done": True,
            "response": {"@type": SERVICE_TYPE, **service},
        }
        if keep:
            ops = self.state["operations"]
            ops[op["name"]] = op
            for old in list(ops)[: max(0, len(ops) - MAX_OPERATIONS)]:
                del ops[old]
        return op

    def _commit(
        self, call: Call, method: str, name: str, request: dict[str, Any], service: dict[str, Any]
    ) -> dict[str, Any]:
        """Persist, record the operation, publish the audit entries; the LRO for the response."""
        started = datetime.now(UTC)
        op = self._operation(name, service, keep=True)
        if method == "DeleteService":
            prefix = f"{name}/revisions/"
            revisions = self.state.setdefault("revisions", {})
            for key in [k for k in revisions if k.startswith(prefix)]:
                del revisions[key]
        else:
            self._remember_revision(service)
        self.changed()
        if self.audit_topic:
            entries = self._audit_entries(
                call=call,
                method=method,
                name=name,
                request=request,
                service=service,
                operation=op["name"],
                started=started,
            )
            for entry in entries:
                self._enqueue(entry)
        return op

    # -- services -----------------------------------------------------------------------------------

    @handles("POST", "run.projects.locations.services.create")
    def create_service(self, call: Call) -> dict[str, Any]:
        parent = call.params["parent"]
        self._location(parent)
        sid = call.arg("serviceId") or ""
        if not SERVICE_ID.match(sid):
            raise ApiError(
                400,
                f"service_id '{sid}' is invalid: it must be 1-49 lowercase letters, digits or hyphens, "
                "begin with a letter and not end with a hyphen",
            )
        spec = self._service_input(call.json())
        name = f"{parent}/services/{sid}"
        if spec.get("name") and spec["name"] != name:
            raise ApiError(400, f"service.name must be empty or '{name}' when creating")
        if name in self.state["services"]:
            raise ApiError(409, f"Resource '{sid}' already exists.", "ALREADY_EXISTS")
        self._require_template(spec)
        service = self._materialize(name, spec, None, new_revision=True)
        if call.flag("validateOnly"):
            return self._operation(name, service, keep=False)
        self.state["services"][name] = service
        self.state["deleted"].pop(name, None)
        request = {"parent": parent, "serviceId": sid, "service": spec}
        return self._commit(call, "CreateService", name, request, service)

    @handles("GET", "run.projects.locations.services.get")
    def get_service(self, call: Call) -> dict[str, Any]:
        return self._existing(call.params["name"])

    @handles("GET", "run.projects.locations.services.list")
    def list_services(self, call: Call) -> dict[str, Any]:
        parent = call.params["parent"]
        self._location(parent)
        prefix = parent + "/services/"
        pools = [self.state["services"]] + ([self.state["deleted"]] if call.flag("showDeleted") else [])
        found = [s for pool in pools for n, s in pool.items() if n.startswith(prefix)]
        found.sort(key=lambda s: (s["createTime"], s["name"]), reverse=True)
        return page_of(call, found, "services")

    @handles("PATCH", "run.projects.locations.services.patch")
    def update_service(self, call: Call) -> dict[str, Any]:
        name = call.params["name"]
        self._location(name)
        spec = self._service_input(call.json())
        if spec.get("name") and spec["name"] != name:
            raise ApiError(400, f"service.name '{spec['name']}' does not match the URL ('{name}')")
        previous = self.state["services"].get(name)
        if previous is None and not call.flag("allowMissing"):
            self._existing(name)
        if previous and spec.get("etag") and spec["etag"] != previous["etag"]:
            raise ApiError(
                409, f"etag mismatch for '{name}': the service was changed concurrently", "ABORTED"
            )
        mask = [p.strip() for p in (call.arg("updateMask") or "").split(",") if p.strip()]
        if mask and previous:
            merged = self.api.strip_read_only("GoogleCloudRunV2Service", copy.deepcopy(previous))
            for path in mask:
                _set_path(merged, spec, path)
        else:
            merged = spec
        merged.pop("etag", None)
        self._require_template(merged)
        service = self._materialize(name, merged, previous, call.flag("forceNewRevision"))
        if call.flag("validateOnly"):
            return self._operation(name, service, keep=False)
        self.state["services"][name] = service
        request: dict[str, Any] = {"service": {**spec, "name": name}}
        if mask:
            request["updateMask"] = ",".join(mask)
        if call.flag("allowMissing"):
            request["allowMissing"] = True
        return self._commit(call, "UpdateService", name, request, service)

    @handles("DELETE", "run.projects.locations.services.delete")
    def delete_service(self, call: Call) -> dict[str, Any]:
        name = call.params["name"]
        existing = self._existing(name)
        etag = call.arg("etag")
        if etag and etag != existing["etag"]:
            raise ApiError(
                409, f"etag mismatch for '{name}': the service was changed concurrently", "ABORTED"
            )
        now = datetime.now(UTC)
        service = {**existing, "deleteTime": rfc3339(now), "expireTime": rfc3339(now + timedelta(days=30))}
        if call.flag("validateOnly"):
            return self._operation(name, service, keep=False)
        del self.state["services"][name]
        self.state["iam"].pop(name, None)
        self.state["deleted"][name] = service
        request = {"name": name, **({"etag": etag} if etag else {})}
        return self._commit(call, "DeleteService", name, request, service)

    # -- IAM -------------------------------------------------------------------------------------------

    @handles("GET", "run.projects.locations.services.getIamPolicy")
    def get_iam_policy(self, call: Call) -> dict[str, Any]:
        """``options.requestedPolicyVersion`` (0, 1 or 3) is the highest version the caller
        understands. A policy with conditional bindings asked for below 3 comes back as IAM formats
        it then: version 1, each conditional binding's role suffixed ``_withcond_<hash>`` and its
        condition left out (https://cloud.google.com/iam/docs/troubleshooting-withcond)."""
        name = call.params["resource"]
        self._existing(name)
        requested = call.arg("options.requestedPolicyVersion") or "0"
        if requested not in ("0", "1", "3"):
            raise ApiError(
                400, f"Invalid requested policy version: {requested}. Valid values are 0, 1 and 3."
            )
        policy = copy.deepcopy(self.state["iam"].get(name) or {"etag": EMPTY_POLICY_ETAG})
        if _conditional(policy.get("bindings")) and requested != "3":
            for binding in policy["bindings"]:
                condition = binding.pop("condition", None)
                if condition is not None:
                    tag = hashlib.sha256(json.dumps(condition, sort_keys=True).encode()).hexdigest()[:20]
                    binding["role"] = f"{binding['role']}_withcond_{tag}"
            policy["version"] = 1
        return policy

    @handles("POST", "run.projects.locations.services.setIamPolicy")
    def set_iam_policy(self, call: Call) -> dict[str, Any]:
        name = call.params["resource"]
        self._existing(name)
        body = enum_names(self.iam_descriptor, call.json())
        problems = self.api.check_fields("GoogleIamV1SetIamPolicyRequest", body)
        if problems or not isinstance(body.get("policy"), dict):
            raise ApiError(
                400, f"Invalid JSON payload received: {'; '.join(problems) or 'policy is required'}"
            )
        policy = body["policy"]
        current = self.state["iam"].get(name) or {"etag": EMPTY_POLICY_ETAG}
        if policy.get("etag") and policy["etag"] != current["etag"]:
            raise ApiError(
                409,
                "There were concurrent policy changes. Please retry the whole read-modify-write with "
                "exponential backoff.",
                "ABORTED",
            )
        for binding in policy.get("bindings") or []:
            role = str(binding.get("role", ""))
            if not role.startswith("roles/") or "_withcond_" in role:
                raise ApiError(400, f"Role {binding.get('role')!r} is not supported for this resource.")
            for member in binding.get("members") or []:
                if not MEMBER.match(member):
                    raise ApiError(400, f"Invalid principal: {member}")
        version = int(policy.get("version") or 0)
        if _conditional(policy.get("bindings")) and version != 3:
            raise ApiError(400, "Policy version 3 is required for a policy with conditional role bindings.")
        if policy.get("etag") and _conditional(current.get("bindings")) and version != 3:
            # the writer read a version-1 rendering; its write would drop or mangle the conditions
            raise ApiError(400, "The policy has conditional role bindings: set it with policy version 3.")
        mask = {p.strip() for p in (body.get("updateMask") or "bindings,etag").split(",")}
        updated = {k: v for k, v in current.items() if k != "etag"}
        for key in ("bindings", "auditConfigs"):
            if key in mask and policy.get(key):
                updated[key] = policy[key]
            elif key in mask:
                updated.pop(key, None)
        updated["version"] = 3 if _conditional(updated.get("bindings")) else 1
        updated["etag"] = base64.b64encode(b"\x07" + os.urandom(7)).decode()
        self.state["iam"][name] = updated
        self.changed()
        return updated

    @handles("POST", "run.projects.locations.services.testIamPermissions")
    def test_iam_permissions(self, call: Call) -> dict[str, Any]:
        self._existing(call.params["resource"])
        permissions = (call.json() or {}).get("permissions") or []
        return {"permissions": permissions} if permissions else {}

    # -- operations -----------------------------------------------------------------------------------

    def _op(self, name: str) -> dict[str, Any]:
        op = self.state["operations"].get(name)
        if op is None:
            raise ApiError(404, f"Operation '{name}' not found.", "NOT_FOUND")
        return op  # type: ignore[no-any-return]

    @handles("GET", "run.projects.locations.operations.get")
    def get_operation(self, call: Call) -> dict[str, Any]:
        return self._op(call.params["name"])

    @handles("POST", "run.projects.locations.operations.wait")
    def wait_operation(self, call: Call) -> dict[str, Any]:
        return self._op(call.params["name"])

    @handles("DELETE", "run.projects.locations.operations.delete")
    def delete_operation(self, call: Call) -> dict[str, Any]:
        self._op(call.params["name"])
        del self.state["operations"][call.params["name"]]
        self.changed()
        return {}

    @handles("GET", "run.projects.locations.operations.list")
    def list_operations(self, call: Call) -> dict[str, Any]:
        prefix = call.params["name"] + "/operations/"
        ops = [op for n, op in reversed(self.state["operations"].items()) if n.startswith(prefix)]
        return page_of(call, ops, "operations")

    # -- audit logs -----------------------------------------------------------------------------------

    def _audit_entries(
        self,
        *,
        call: Call,
        method: str,
        name: str,
        request: dict[str, Any],
        service: dict[str, Any],
        operation: str,
        started: datetime,
    ) -> list[dict[str, Any]]:
        """The two Admin Activity LogEntries of one LRO, as a logging sink exports them."""
        project, region, sid = _split(name)
        permission = {"CreateService": "create", "UpdateService": "update", "DeleteService": "delete"}[method]
        payload = {
            "@type": AUDIT_TYPE,
            "serviceName": "run.googleapis.com",
            "methodName": f"google.cloud.run.v2.Services.{method}",
            "resourceName": name,
            "authenticationInfo": {"principalEmail": self.principal},
            "authorizationInfo": [
                {
                    "resource": name,
                    "permission": f"run.services.{permission}",
                    "granted": True,
                    "resourceAttributes": {},
                    "permissionType": "ADMIN_WRITE",
                }
            ],
            "requestMetadata": {
                "callerIp": call.request.remote_addr or "127.0.0.1",
                "callerSuppliedUserAgent": call.request.headers.get("User-Agent", ""),
                "requestAttributes": {"time": rfc3339(started), "auth": {}},
                "destinationAttributes": {},
            },
            "resourceLocation": {"currentLocations": [region]},
        }
        common = {
            "logName": f"projects/{project}/logs/cloudaudit.googleapis.com%2Factivity",
            "resource": {
                "type": "cloud_run_revision",
                "labels": {
                    "project_id": project,
                    "location": region,
                    "service_name": sid,
                    "configuration_name": "",
                    "revision_name": "",
                },
            },
            "severity": "NOTICE",
        }
        request_type = f"type.googleapis.com/google.cloud.run.v2.{method}Request"
        finished = datetime.now(UTC) + timedelta(milliseconds=1)
        entries = []
        for moment, position, body in (
            (started, "first", {"request": {"@type": request_type, **request}}),
            (finished, "last", {"response": {"@type": SERVICE_TYPE, **service}}),
        ):
            entries.append(
                {
                    "insertId": secrets.token_hex(6),
                    **common,
                    "protoPayload": {**payload, **body},
                    "timestamp": rfc3339(moment),
                    "receiveTimestamp": rfc3339(moment + timedelta(milliseconds=120)),
                    "operation": {"id": operation, "producer": "run.googleapis.com", position: True},
                }
            )
        return entries

    def _enqueue(self, entry: dict[str, Any]) -> None:
        """Queue one LogEntry for publishing (serialized now: later requests cannot change it)."""
        if self._audit_thread is None:
            self._audit_thread = threading.Thread(target=self._publisher, name="standin-audit", daemon=True)
            self._audit_thread.start()
        self._audit_queue.put((json.dumps(entry).encode(), str(entry.get("timestamp") or rfc3339())))

    def _publisher(self) -> None:
        client = None
        try:
            from google.cloud import pubsub_v1

            client = pubsub_v1.PublisherClient()  # honours PUBSUB_EMULATOR_HOST
        except Exception as exc:
            print(f"cloudrun stand-in: no Pub/Sub publisher, audit entries dropped: {exc}", file=sys.stderr)
        try:
            while True:
                item = self._audit_queue.get()
                try:
                    if item is None:
                        return
                    if client is not None:
                        data, stamp = item
                        attributes = {"logging.googleapis.com/timestamp": stamp}
                        client.publish(self.audit_topic, data, **attributes).result(timeout=30)
                except Exception as exc:  # keep serving; the log says what got lost
                    print(
                        f"cloudrun stand-in: audit publish to {self.audit_topic} failed: {exc}",
                        file=sys.stderr,
                    )
                finally:
                    self._audit_queue.task_done()
        finally:
            if client is not None:
                client.stop()
                client.transport.close()

    def _publish_raw(self, request: Request) -> dict[str, Any]:
        if not self.audit_topic:
            raise ApiError(400, "the stand-in was started without --audit-topic")
        body = request.get_json(silent=True)
        entries = [e for e in (body if isinstance(body, list) else [body]) if isinstance(e, dict)]
        if not entries or len(entries) != (len(body) if isinstance(body, list) else 1):
            raise ApiError(400, "body must be a LogEntry JSON object or a list of them")
        for entry in entries:
            self._enqueue(entry)
        return {"queued": len(entries)}

    def flush(self) -> None:
        """Wait until every queued audit entry is published."""
        if self._audit_thread is not None:
            self._audit_queue.join()

    def close(self) -> None:
        self.stop_jobs()
        if self._audit_thread is not None:
            self._audit_queue.put(None)
            self._audit_thread.join(timeout=60)
            self._audit_thread = None


def start(port: int = 0, **opts: Any) -> Handle:
    """Serve a :class:`CloudRun` stand-in in this process (``opts`` as its constructor takes)."""
    return serve(CloudRun(**opts), port)


def _numbers(items: list[str]) -> dict[str, str]:
    out = {}
    for item in ",".join(items).split(","):
        if item.strip():
            project, _, number = item.partition("=")
            if not number.strip().isdigit():
                raise SystemExit(f"--project-number-map expects PROJECT=NUMBER, got {item!r}")
            out[project.strip()] = number.strip()
    return out


def main(argv: list[str] | None = None) -> None:
    parser = base_parser("Cloud Run Admin API v2 stand-in")
    parser.add_argument("--audit-topic", help="projects/P/topics/T to publish audit LogEntries to")
    parser.add_argument(
        "--project-number-map", action="append", default=[], help="PROJECT=NUMBER (repeat or comma-separate)"
    )
    parser.add_argument("--principal", default="developer@example.com", help="caller email in audit logs")
    parser.add_argument(
        "--job",
        action="append",
        default=[],
        metavar="NAME=MODULE",
        help="a Cloud Run job that jobs.run starts as `python -m MODULE` (repeatable)",
    )
    parser.add_argument("--job-log-dir", help="directory for the job processes' output")
    args = parser.parse_args(argv)
    jobs = dict(item.split("=", 1) for item in args.job)
    standin = CloudRun(
        audit_topic=args.audit_topic,
        project_numbers=_numbers(args.project_number_map),
        principal=args.principal,
        state_file=args.state_file,
        check_fields=args.check_fields,
        jobs=jobs,
        job_log_dir=args.job_log_dir,
    )
    run_forever(standin, args.port)


if __name__ == "__main__":
    main(sys.argv[1:])
