"""Stand-in for the Cloud Scheduler API v1 (discovery ``cloudscheduler.v1``): jobs.

Cloud Scheduler has no emulator, and ``gatehouse freeze`` leans on the job's state machine: a job
is ENABLED when created, ``pause`` takes an ENABLED job to PAUSED, ``resume`` a PAUSED one back to
ENABLED, and ``patch`` keeps the state it finds (a paused job stays paused through an update). So
this stand-in models jobs and answers the official ``CloudSchedulerClient`` (REST transport):

- ``create`` (``projects/P/locations/L`` parent): the body is a Job; ``name`` is optional (an id is
  made up without it) and must sit under the parent with a job id of letters, digits, ``-`` and
  ``_`` (at most 500); ``schedule`` is required; exactly one target (``pubsubTarget`` with a
  ``topicName`` in the job's project and non-empty ``data`` or ``attributes``, ``httpTarget`` with
  a ``uri``, or ``appEngineHttpTarget``); ``timeZone`` a tz database name (or ``utc``);
  ``description`` at most 500 characters; output-only fields are ignored. An existing name answers
  409 ALREADY_EXISTS;
- ``get``, ``delete``, ``pause``, ``resume`` of a missing job: 404 NOT_FOUND;
- ``list``: the parent's jobs by name, ``pageSize`` at most 500 (default 500), ``pageToken``;
- ``patch``: ``updateMask`` (camelCase or snake_case paths) names the fields to change; without
  it, the fields present in the body. ``name`` and output-only fields cannot be updated (400);
  setting one target clears the others. Sets ``userUpdateTime``;
- ``pause``/``resume`` answer the Job with its new ``state``.

Choices where the public reference is silent: pausing a job that is not ENABLED, or resuming one
that is not PAUSED ("A job must be in Job.State.ENABLED to be paused", "... PAUSED to be
resumed"), answers 400 FAILED_PRECONDITION naming the state. ``run`` is not served: the stand-in
does not dispatch jobs (the stack starts Cloud Run jobs through the Cloud Run stand-in).

A request body that is not ``application/json`` answers 400 INVALID_ARGUMENT, as the Apigee
stand-in does for JSON resources.

Run: ``python -m gatehouse.local.standins.scheduler --port 8609 [--state-file F]``; in-process
``start(port=0)``.
"""

from __future__ import annotations

import copy
import re
import secrets
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

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

JOB_ID = re.compile(r"^[A-Za-z0-9_-]{1,500}$")
PARENT = re.compile(r"^projects/([A-Za-z0-9:.-]+)/locations/([^/]+)$")
TOPIC = re.compile(r"^projects/([^/]+)/topics/[^/]+$")
TARGETS = ("pubsubTarget", "httpTarget", "appEngineHttpTarget")
# Job fields a client may write (the rest are output only)
WRITABLE = ("description", "schedule", "timeZone", "retryConfig", "attemptDeadline", *TARGETS)
_SNAKE = {
    "time_zone": "timeZone",
    "retry_config": "retryConfig",
    "attempt_deadline": "attemptDeadline",
    "pubsub_target": "pubsubTarget",
    "http_target": "httpTarget",
    "app_engine_http_target": "appEngineHttpTarget",
    "user_update_time": "userUpdateTime",
    "schedule_time": "scheduleTime",
    "last_attempt_time": "lastAttemptTime",
    "satisfies_pzs": "satisfiesPzs",
}
MAX_PAGE = 500


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _precondition(message: str) -> ApiError:
    return ApiError(400, message, "FAILED_PRECONDITION")


class Scheduler(StandIn):
    API = "cloudscheduler.v1"
    NAME = "scheduler"

    def __init__(
        self,
        *,
        clock: Callable[[], datetime] | None = None,
        state_file: str | None = None,
        check_fields: bool = False,
    ) -> None:
        self._clock = clock or (lambda: datetime.now(UTC))
        super().__init__(state_file=state_file, check_fields=check_fields)

    def initial_state(self) -> dict[str, Any]:
        return {"jobs": {}}  # full name -> Job JSON

    # -- helpers --------------------------------------------------------------------------------

    def _job(self, name: str) -> dict[str, Any]:
        job = self.state["jobs"].get(name)
        if job is None:
            raise ApiError(404, f"Job not found: {name}.", "NOT_FOUND")
        return job  # type: ignore[no-any-return]

    def _body(self, call: Call, schema: str) -> dict[str, Any]:
        """The JSON body as ``schema``: JSON content type, an object, only the schema's fields."""
        raw = call.request.get_data(cache=True)
        if raw.strip() and call.request.mimetype != "application/json":
            raise ApiError(
                400,
                f'unsupported Content-Type "{call.request.mimetype or "none"}": send the {schema} as JSON',
                "INVALID_ARGUMENT",
            )
        body = call.json()
        if not isinstance(body, dict):
            raise ApiError(400, f"Invalid JSON payload received. Expected an object for {schema}.")
        named: dict[str, Any] = self._enum_names({"$ref": schema}, body)
        problems = self.api.check_fields(schema, named)
        if problems:
            raise ApiError(400, f"Invalid JSON payload received. {problems[0]}", "INVALID_ARGUMENT")
        return named

    def _enum_names(self, spec: dict[str, Any], value: Any) -> Any:
        """Enum values as their names: the GAPIC REST transports send ``$alt=json;enum-encoding=int``
        and so write enums as numbers (a discovery document lists an enum's values in the order of
        their numbers); stored and answered as names, which every client reads."""
        if "$ref" in spec:
            spec = self.api.schema(spec["$ref"])
        if "enum" in spec and isinstance(value, int) and not isinstance(value, bool):
            if not 0 <= value < len(spec["enum"]):
                raise ApiError(400, f"Invalid enum value {value}.", "INVALID_ARGUMENT")
            return spec["enum"][value]
        if isinstance(value, dict) and spec.get("type") == "object":
            props = spec.get("properties") or {}
            return {k: self._enum_names(props[k], v) if k in props else v for k, v in value.items()}
        if isinstance(value, list) and "items" in spec:
            return [self._enum_names(spec["items"], v) for v in value]
        return value

    @staticmethod
    def _check(job: dict[str, Any], project: str) -> None:
        """What the API refuses in a job's writable fields (create, and the result of a patch)."""
        if not str(job.get("schedule") or "").strip():
            raise ApiError(400, "Job.schedule is required.", "INVALID_ARGUMENT")
        if len(str(job.get("description") or "")) > 500:
            raise ApiError(400, "Job.description must be at most 500 characters.", "INVALID_ARGUMENT")
        zone = str(job.get("timeZone") or "")
        if zone and zone.lower() != "utc":
            try:
                ZoneInfo(zone)
            except (ZoneInfoNotFoundError, ValueError):
                raise ApiError(400, f"Invalid time zone {zone!r}.", "INVALID_ARGUMENT") from None
        targets = [t for t in TARGETS if job.get(t)]
        if len(targets) != 1:
            raise ApiError(
                400,
                "A job must have exactly one target: pubsubTarget, httpTarget or appEngineHttpTarget.",
                "INVALID_ARGUMENT",
            )
        pubsub = job.get("pubsubTarget")
        if pubsub:
            match = TOPIC.fullmatch(str(pubsub.get("topicName") or ""))
            if match is None:
                raise ApiError(400, "pubsubTarget.topicName must be projects/P/topics/T.", "INVALID_ARGUMENT")
            if match[1] != project:
                raise ApiError(400, "The topic must be in the same project as the job.", "INVALID_ARGUMENT")
            if not pubsub.get("data") and not pubsub.get("attributes"):
                raise ApiError(
                    400,
                    "A Pub/Sub message needs non-empty data or at least one attribute.",
                    "INVALID_ARGUMENT",
                )
        http = job.get("httpTarget")
        if http and not re.match(r"^https?://", str(http.get("uri") or "")):
            raise ApiError(400, "httpTarget.uri must be an http(s) URL.", "INVALID_ARGUMENT")

    def _set_state(self, name: str, want: str, need: str, verb: str) -> dict[str, Any]:
        job = self._job(name)
        if job["state"] != need:
            raise _precondition(f"Job {name} is {job['state']}: a job must be {need} to be {verb}.")
        job["state"] = want
        self.changed()
        return job

    # -- jobs -------------------------------------------------------------------------------------

    @handles("POST", "cloudscheduler.projects.locations.jobs.create")
    def create_job(self, call: Call) -> dict[str, Any]:
        parent = call.params["parent"]
        where = PARENT.fullmatch(parent)
        if where is None:
            raise ApiError(400, f"Invalid parent {parent!r}: projects/P/locations/L.", "INVALID_ARGUMENT")
        body = self.api.strip_read_only("Job", self._body(call, "Job"))
        name = str(body.pop("name", "") or f"{parent}/jobs/{secrets.token_hex(8)}")
        job_id = name.removeprefix(f"{parent}/jobs/")
        if job_id == name or not JOB_ID.fullmatch(job_id):
            raise ApiError(
                400,
                f"Invalid job name {name!r}: {parent}/jobs/ID, ID of letters, digits, '-' and '_' "
                "(at most 500).",
                "INVALID_ARGUMENT",
            )
        if name in self.state["jobs"]:
            raise ApiError(409, f"Job {name} already exists.", "ALREADY_EXISTS")
        job = {key: copy.deepcopy(body[key]) for key in WRITABLE if body.get(key)}
        self._check(job, where[1])
        job.update(name=name, state="ENABLED", userUpdateTime=rfc3339(self._clock()))
        self.state["jobs"][name] = job
        self.changed()
        return job

    @handles("GET", "cloudscheduler.projects.locations.jobs.get")
    def get_job(self, call: Call) -> dict[str, Any]:
        return self._job(call.params["name"])

    @handles("GET", "cloudscheduler.projects.locations.jobs.list")
    def list_jobs(self, call: Call) -> dict[str, Any]:
        prefix = call.params["parent"] + "/jobs/"
        found = [job for name, job in sorted(self.state["jobs"].items()) if name.startswith(prefix)]
        return page_of(call, found, "jobs", default_size=MAX_PAGE, max_size=MAX_PAGE)

    @handles("PATCH", "cloudscheduler.projects.locations.jobs.patch")
    def patch_job(self, call: Call) -> dict[str, Any]:
        name = call.params["name"]
        job = self._job(name)
        body = self._body(call, "Job")
        paths = [p.strip() for p in (call.arg("updateMask") or "").split(",") if p.strip()]
        fields = [_SNAKE.get(p, p) for p in paths] or [k for k in body if k != "name"]
        for field in fields:
            if field == "name":
                raise ApiError(400, "Job.name cannot be updated.", "INVALID_ARGUMENT")
            if field not in WRITABLE:
                what = "is output only" if field in self.api.schema("Job")["properties"] else "is not a field"
                raise ApiError(400, f"update_mask: {field} {what} of Job.", "INVALID_ARGUMENT")
        updated = copy.deepcopy(job)
        for field in fields:
            if field in TARGETS and body.get(field):
                for other in TARGETS:
                    updated.pop(other, None)  # the target is a oneof: setting one clears the others
            if body.get(field) in (None, "", {}, []):
                updated.pop(field, None)
            else:
                updated[field] = copy.deepcopy(body[field])
        self._check(updated, name.split("/")[1])
        updated["userUpdateTime"] = rfc3339(self._clock())
        self.state["jobs"][name] = updated
        self.changed()
        return updated

    @handles("DELETE", "cloudscheduler.projects.locations.jobs.delete")
    def delete_job(self, call: Call) -> dict[str, Any]:
        name = call.params["name"]
        self._job(name)
        del self.state["jobs"][name]
        self.changed()
        return {}

    @handles("POST", "cloudscheduler.projects.locations.jobs.pause")
    def pause_job(self, call: Call) -> dict[str, Any]:
        self._body(call, "PauseJobRequest")
        return self._set_state(call.params["name"], "PAUSED", "ENABLED", "paused")

    @handles("POST", "cloudscheduler.projects.locations.jobs.resume")
    def resume_job(self, call: Call) -> dict[str, Any]:
        self._body(call, "ResumeJobRequest")
        return self._set_state(call.params["name"], "ENABLED", "PAUSED", "resumed")


def start(port: int = 0, **opts: Any) -> Handle:
    """Serve a :class:`Scheduler` stand-in in this process (``opts`` as its constructor takes)."""
    return serve(Scheduler(**opts), port)


def main(argv: list[str] | None = None) -> None:
    parser = base_parser(
        "Cloud Scheduler API v1 stand-in (jobs: create, get, list, patch, delete, pause, resume)"
    )
    args = parser.parse_args(argv)
    run_forever(Scheduler(state_file=args.state_file, check_fields=args.check_fields), args.port)


if __name__ == "__main__":
    main(sys.argv[1:])
