"""Cloud Run jobs as resources for the Cloud Run stand-in: ``jobs.create/get/list/patch``.

The rotation job's consumer scan lists every Cloud Run job (and service) to find the ones that read
a rotated secret, and may roll a job's template to a new version. This mixin keeps v2 ``Job``
resources (separate from ``cloudrun_jobs.JobsMixin``, which only starts local processes for
``jobs.run``): create and patch answer a ``done`` Operation with the typed Job, patch replaces the
whole Job (v2 ``UpdateJob`` has no update mask), a stale ``etag`` answers 409 ABORTED, and every
change bumps ``generation`` (an int64 string) and the etag.

Wiring: ``class CloudRun(JobsCrudMixin, JobsMixin, StandIn)`` in ``cloudrun.py``.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from gatehouse.local.standins.discovery import Discovery
from gatehouse.local.standins.server import ApiError, Call, handles, page_of

JOB_TYPE = "type.googleapis.com/google.cloud.run.v2.Job"
JOB_ID = re.compile(r"^[a-z]([-a-z0-9]{0,47}[a-z0-9])?$")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class JobsCrudMixin:
    """Handlers for ``run.projects.locations.jobs.{create,get,list,patch}``."""

    api: Discovery
    state: dict[str, Any]
    principal: str

    # provided by StandIn and CloudRun (annotations only: a method here would shadow theirs)
    changed: Callable[[], None]
    project_number: Callable[[str], str]

    def _job_store(self) -> dict[str, dict[str, Any]]:
        return self.state.setdefault("job_resources", {})  # type: ignore[no-any-return]

    def _job_input(self, body: Any) -> dict[str, Any]:
        from gatehouse.local.standins.cloudrun import _proto_descriptor, enum_names  # cloudrun imports us

        if not isinstance(body, dict):
            raise ApiError(400, "Invalid JSON payload received. Expected an object for 'job'.")
        body = enum_names(_proto_descriptor("google.cloud.run.v2.Job"), body)
        problems = self.api.check_fields("GoogleCloudRunV2Job", body)
        if problems:
            field, _, why = problems[0].partition(": ")
            raise ApiError(400, f"Invalid JSON payload received at 'job.{field}': {why}")
        body = self.api.strip_read_only("GoogleCloudRunV2Job", body)
        containers = ((body.get("template") or {}).get("template") or {}).get("containers") or []
        if not containers or not all(c.get("image") for c in containers):
            raise ApiError(400, "job.template.template.containers: at least one container with an image")
        return dict(body)

    def _existing_job(self, name: str) -> dict[str, Any]:
        job = self._job_store().get(name)
        if job is None:
            parts = name.split("/")
            raise ApiError(
                404,
                f"Resource '{parts[-1]}' of kind 'JOB' in region '{parts[3]}' in project '{parts[1]}' "
                "does not exist.",
                "NOT_FOUND",
            )
        return job

    def _materialize_job(
        self, name: str, spec: dict[str, Any], previous: dict[str, Any] | None
    ) -> dict[str, Any]:
        project = name.split("/")[1]
        now = _now()
        generation = int(previous["generation"]) + 1 if previous else 1
        job = copy.deepcopy(spec)
        job.pop("etag", None)
        job["name"] = name
        job.setdefault("launchStage", "GA")
        execution = job.setdefault("template", {})
        execution.setdefault("taskCount", 1)
        execution.setdefault("parallelism", 0)
        task = execution.setdefault("template", {})
        task.setdefault("maxRetries", 3)
        task.setdefault("timeout", "600s")
        task.setdefault(
            "serviceAccount", f"{self.project_number(project)}-compute@developer.gserviceaccount.com"
        )
        condition = {"type": "Ready", "state": "CONDITION_SUCCEEDED", "lastTransitionTime": now}
        job.update(
            {
                "uid": previous["uid"] if previous else str(uuid.uuid4()),
                "generation": str(generation),
                "observedGeneration": str(generation),
                "createTime": previous["createTime"] if previous else now,
                "updateTime": now,
                "creator": previous["creator"] if previous else self.principal,
                "lastModifier": self.principal,
                "terminalCondition": condition,
                "conditions": [],
                "reconciling": False,
            }
        )
        digest = hashlib.sha256(f"{name}/{generation}/{now}".encode()).digest()
        job["etag"] = f'"{base64.b64encode(digest).decode()[:43]}"'
        return job

    @staticmethod
    def _job_operation(name: str, job: dict[str, Any]) -> dict[str, Any]:
        parts = name.split("/")
        return {
            "name": f"projects/{parts[1]}/locations/{parts[3]}/operations/{uuid.uuid4()}",
            "metadata": {"@type": JOB_TYPE, **job},
            "done": True,
            "response": {"@type": JOB_TYPE, **job},
        }

    @handles("POST", "run.projects.locations.jobs.create")
    def create_job(self, call: Call) -> dict[str, Any]:
        parent = call.params["parent"]
        if parent.split("/")[3] == "-":
            raise ApiError(
                400, 'Location must be a valid Google Cloud region, and cannot be the "-" wildcard.'
            )
        job_id = call.arg("jobId") or ""
        if not JOB_ID.match(job_id):
            raise ApiError(400, f"job_id '{job_id}' is invalid: 1-49 lowercase letters, digits or hyphens")
        name = f"{parent}/jobs/{job_id}"
        if name in self._job_store():
            raise ApiError(409, f"Resource '{job_id}' already exists.", "ALREADY_EXISTS")
        job = self._materialize_job(name, self._job_input(call.json()), None)
        if not call.flag("validateOnly"):
            self._job_store()[name] = job
            self.changed()
        return self._job_operation(name, job)

    @handles("GET", "run.projects.locations.jobs.get")
    def get_job(self, call: Call) -> dict[str, Any]:
        return self._existing_job(call.params["name"])

    @handles("GET", "run.projects.locations.jobs.list")
    def list_jobs(self, call: Call) -> dict[str, Any]:
        parent = call.params["parent"]
        if parent.split("/")[3] == "-":
            raise ApiError(
                400, 'Location must be a valid Google Cloud region, and cannot be the "-" wildcard.'
            )
        prefix = parent + "/jobs/"
        found = sorted(
            (j for n, j in self._job_store().items() if n.startswith(prefix)),
            key=lambda j: (j["createTime"], j["name"]),
            reverse=True,
        )
        return page_of(call, found, "jobs")

    @handles("PATCH", "run.projects.locations.jobs.patch")
    def update_job(self, call: Call) -> dict[str, Any]:
        name = call.params["name"]
        raw = call.json()
        spec = self._job_input(raw)
        if spec.get("name") and spec["name"] != name:
            raise ApiError(400, f"job.name '{spec['name']}' does not match the URL ('{name}')")
        previous = self._job_store().get(name)
        if previous is None and not call.flag("allowMissing"):
            self._existing_job(name)
        etag = raw.get("etag") if isinstance(raw, dict) else None
        if previous and etag and etag != previous["etag"]:
            raise ApiError(409, f"etag mismatch for '{name}': the job was changed concurrently", "ABORTED")
        job = self._materialize_job(name, spec, previous)
        if not call.flag("validateOnly"):
            self._job_store()[name] = job
            self.changed()
        return self._job_operation(name, job)
