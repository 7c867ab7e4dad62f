"""Stand-in for Secret Manager v1 (discovery document ``secretmanager.v1``), global secrets.

Secret Manager has no emulator, and rotation leans on its details: etag preconditions, version
states, aliases, annotation limits, CRC32C. So this stand-in models them and answers the official
``SecretManagerServiceClient`` (REST transport) with Google's JSON:

- secrets: create (``replication`` required), get, list (``filter`` terms ``labels.K:*``,
  ``labels.K=V``/``labels.K:V``, ``name:S`` joined by spaces or ``AND``; ``pageSize``/``pageToken``),
  patch (``updateMask`` required: labels, annotations, versionAliases, rotation, topics, expireTime,
  ttl, versionDestroyTtl), delete (``etag``); a new etag on every change;
- versions: addVersion (payload at most 64 KiB, ``dataCrc32c`` verified -> 400 INVALID_ARGUMENT),
  get, list (newest first, ``state:X`` filter), access, enable/disable/destroy with the version's
  ``etag``; DESTROYED is terminal; ``versionDestroyTtl`` turns destroy into DISABLED plus
  ``scheduledDestroyTime``;
- annotations: keys 1-63 characters, alphanumeric ends, ``-_.`` inside, at most 128 bytes, keys
  and values together under 16 KiB; aliases: at most 50, ``^[A-Za-z][A-Za-z0-9_-]{0,62}$``, not
  ``latest``/``NEW``, naming an existing version; labels: Google label rules.

Choices where the public documentation is silent (the lead asked for them to be explicit):

- a stale ``Secret.etag`` or ``SecretVersion.etag`` answers 400 FAILED_PRECONDITION with a message
  containing "etag mismatch"; a version in the wrong state answers 400 FAILED_PRECONDITION
  "Secret Version [...] is in DISABLED state." (the real wording). Clients tell them apart by the
  word "etag" (see shared/gatehouse/adapters/secretmanager.py);
- ``latest`` is the most recently created version, whatever its state, as the API reference says
  ("an alias to the most recently created SecretVersion") and as users report (accessing
  ``latest`` when the newest version is DISABLED answers FAILED_PRECONDITION naming that version;
  google-github-actions/get-secretmanager-secrets#268, external-secrets#4042);
- adding a version does not change the secret's etag; enable/disable change a version's etag only
  when its state changes (and are otherwise no-ops).

Names: with ``project_numbers={"my-proj": "123"}`` resource names in answers use the project
number, as the real API does (requests may use either); without it, the project as given.

Event notifications: when a secret has ``topics``, SECRET_CREATE, SECRET_UPDATE, SECRET_DELETE,
SECRET_VERSION_ADD/ENABLE/DISABLE/DESTROY are published through ``google.cloud.pubsub_v1``
(``PUBSUB_EMULATOR_HOST`` selects the emulator) with attributes ``eventType``, ``secretId``,
``dataFormat=JSON_API_V1``, ``timestamp`` (and ``versionId``, ``deleteType``); data is the
Secret or SecretVersion JSON. Test hooks:

- ``POST /_standin/secretmanager/rotate`` ``{"secret": "projects/P/secrets/S"}`` publishes the
  SECRET_ROTATE notification Secret Manager sends at ``rotation.nextRotationTime`` (and advances
  it by ``rotationPeriod``); 400 if the secret has no topics;
- ``POST /_standin/clock`` ``{"offset_seconds": N}`` shifts the stand-in's clock.

Run: ``python -m gatehouse.local.standins.secretmanager --port 8605 [--state-file F]
[--project-number-map my-proj=123]``; in-process ``start(port=0, clock=..., project_numbers=...)``.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import queue
import re
import secrets
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import google_crc32c
from werkzeug.wrappers import Request

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

MAX_PAYLOAD = 64 * 1024
MAX_ANNOTATIONS = 16 * 1024
MAX_ALIASES = 50
MAX_TOPICS = 10
SECRET_ID = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
ALIAS = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,62}$")
ANNOTATION_KEY = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$")
LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")
TOPIC = re.compile(r"^projects/[^/]+/topics/[^/]+$")
DURATION = re.compile(r"^([0-9]+)(\.[0-9]{1,9})?s$")
UPDATABLE = {
    "labels": "labels",
    "annotations": "annotations",
    "versionAliases": "versionAliases",
    "version_aliases": "versionAliases",
    "rotation": "rotation",
    "topics": "topics",
    "expireTime": "expireTime",
    "expire_time": "expireTime",
    "ttl": "ttl",
    "versionDestroyTtl": "versionDestroyTtl",
    "version_destroy_ttl": "versionDestroyTtl",
}


def crc32c(data: bytes) -> int:
    return int(google_crc32c.value(data))


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_time(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(400, f"Invalid timestamp {text!r}") from None


def _seconds(duration: str, field: str) -> float:
    match = DURATION.fullmatch(str(duration))
    if match is None:
        raise ApiError(400, f"Invalid value at '{field}' (type.googleapis.com/google.protobuf.Duration)")
    return float(match[1] + (match[2] or ""))


def _etag() -> str:
    return f'"{secrets.token_hex(7)}"'


def _int64(value: Any, field: str) -> int:
    try:
        return int(str(value))
    except ValueError:
        raise ApiError(400, f"Invalid value at '{field}' (TYPE_INT64), \"{value}\"") from None


def _precondition(message: str) -> ApiError:
    return ApiError(400, message, "FAILED_PRECONDITION")


class SecretManager(StandIn):
    API = "secretmanager.v1"
    NAME = "secretmanager"

    def __init__(
        self,
        *,
        clock: Callable[[], datetime] | None = None,
        project_numbers: dict[str, str] | None = None,
        state_file: str | None = None,
        check_fields: bool = False,
    ) -> None:
        self._clock = clock or (lambda: datetime.now(UTC))
        self.project_numbers = dict(project_numbers or {})
        self._events: queue.Queue[tuple[str, bytes, dict[str, str]] | None] = queue.Queue()
        self._publisher_thread: threading.Thread | None = None
        self.publish_errors: list[str] = []
        super().__init__(state_file=state_file, check_fields=check_fields)
        self.extra_routes[("POST", "/_standin/secretmanager/rotate")] = self._rotate_hook
        self.extra_routes[("POST", "/_standin/clock")] = self._shift_clock

    def initial_state(self) -> dict[str, Any]:
        # secrets: canonical name -> {"secret": Secret JSON, "versions": {n: {"version", "data", "crc"}},
        # "next": next version number}
        return {"secrets": {}, "clock_offset": 0.0}

    def now(self) -> datetime:
        return self._clock() + timedelta(seconds=float(self.state.get("clock_offset", 0.0)))

    # -- names --------------------------------------------------------------------------------

    def _project(self, project: str) -> str:
        return self.project_numbers.get(project, project)

    def _secret_name(self, name: str) -> str:
        """``projects/P/secrets/S`` with P as the API answers it (number if known)."""
        parts = name.split("/")
        return f"projects/{self._project(parts[1])}/secrets/{parts[3]}"

    def _entry(self, name: str) -> dict[str, Any]:
        canonical = self._secret_name(name)
        entry = self.state["secrets"].get(canonical)
        if entry is None:
            raise ApiError(404, f"Secret [{canonical}] not found or has no versions.")
        self._settle(entry)
        return entry  # type: ignore[no-any-return]

    def _settle(self, entry: dict[str, Any]) -> None:
        """Destroy versions whose delayed destruction (versionDestroyTtl) is due."""
        now = self.now()
        for stored in entry["versions"].values():
            version = stored["version"]
            due = version.get("scheduledDestroyTime")
            if due and _parse_time(due) <= now:
                version.pop("scheduledDestroyTime")
                version.update(state="DESTROYED", destroyTime=rfc3339(now), etag=_etag())
                stored["data"] = None

    def _version(self, entry: dict[str, Any], ref: str) -> dict[str, Any]:
        """The stored version a path segment names: a number, an alias or ``latest``."""
        name = entry["secret"]["name"]
        versions = entry["versions"]
        number: int | None
        if ref == "latest":
            number = max((int(n) for n in versions), default=None)
        elif ref.isdigit():
            number = int(ref)
        else:
            alias = entry["secret"].get("versionAliases", {}).get(ref)
            number = int(alias) if alias is not None else None
        stored = versions.get(str(number)) if number is not None else None
        if stored is None:
            raise ApiError(404, f"Secret Version [{name}/versions/{ref}] not found.")
        return stored  # type: ignore[no-any-return]

    # -- validation ---------------------------------------------------------------------------

    @staticmethod
    def _check_labels(labels: Any) -> dict[str, str]:
        if not isinstance(labels, dict) or len(labels) > 64:
            raise ApiError(400, "Secret.labels must be a map of at most 64 labels")
        for key, value in labels.items():
            if not LABEL_KEY.fullmatch(key) or not LABEL_VALUE.fullmatch(str(value)):
                raise ApiError(400, f"Invalid label {key}={value!r}: see the Google Cloud label rules")
        return {str(k): str(v) for k, v in labels.items()}

    @staticmethod
    def _check_annotations(annotations: Any) -> dict[str, str]:
        if not isinstance(annotations, dict):
            raise ApiError(400, "Secret.annotations must be a map")
        size = 0
        for key, value in annotations.items():
            if not ANNOTATION_KEY.fullmatch(key) or len(key.encode()) > 128:
                raise ApiError(
                    400,
                    f"Invalid annotation key {key!r}: 1-63 characters, beginning and ending with an "
                    "alphanumeric character, with dashes, underscores, dots and alphanumerics between.",
                )
            size += len(key.encode()) + len(str(value).encode())
        if size >= MAX_ANNOTATIONS:
            raise ApiError(
                400,
                f"The total size of annotation keys and values must be less than 16KiB; got {size} bytes.",
            )
        return {str(k): str(v) for k, v in annotations.items()}

    @staticmethod
    def _check_aliases(entry: dict[str, Any] | None, aliases: Any) -> dict[str, str]:
        if not isinstance(aliases, dict):
            raise ApiError(400, "Secret.versionAliases must be a map")
        if len(aliases) > MAX_ALIASES:
            raise ApiError(
                400, f"A secret can have at most {MAX_ALIASES} version aliases; got {len(aliases)}."
            )
        out = {}
        for alias, value in aliases.items():
            if not ALIAS.fullmatch(alias) or alias in ("latest", "NEW"):
                raise ApiError(
                    400,
                    f"Invalid version alias {alias!r}: up to 63 letters, digits, '-' and '_', starting "
                    "with a letter, and not 'latest' or 'NEW'.",
                )
            number = _int64(value, f"secret.version_aliases[{alias}]")
            if entry is None or str(number) not in entry["versions"]:
                raise ApiError(
                    400, f"Version alias {alias!r} refers to version {number}, which does not exist."
                )
            out[alias] = str(number)
        return out

    def _check_rotation(self, secret: dict[str, Any], *, new_schedule: bool = True) -> None:
        """Rotation needs topics; a schedule being written must start at least 300 s from now."""
        rotation = secret.get("rotation")
        if not rotation:
            return
        if not secret.get("topics"):
            raise ApiError(400, "Secret.topics must be set to configure rotation.")
        period = rotation.get("rotationPeriod")
        next_time = rotation.get("nextRotationTime")
        if period is not None:
            seconds = _seconds(period, "secret.rotation.rotation_period")
            if not 3600 <= seconds <= 3153600000:
                raise ApiError(400, "rotation_period must be between 3600s and 3153600000s.")
            if not next_time:
                raise ApiError(400, "next_rotation_time must be set if rotation_period is set.")
        if new_schedule and next_time and _parse_time(next_time) < self.now() + timedelta(seconds=300):
            raise ApiError(400, "next_rotation_time must be at least 300s in the future.")

    @staticmethod
    def _check_topics(topics: Any) -> list[dict[str, str]]:
        if not isinstance(topics, list) or len(topics) > MAX_TOPICS:
            raise ApiError(400, f"Secret.topics must be a list of at most {MAX_TOPICS} topics")
        for topic in topics:
            if not isinstance(topic, dict) or not TOPIC.fullmatch(str(topic.get("name", ""))):
                raise ApiError(400, f"Invalid topic {topic!r}: projects/*/topics/*")
        return [{"name": str(t["name"])} for t in topics]

    # -- secrets --------------------------------------------------------------------------------

    @handles("POST", "secretmanager.projects.secrets.create")
    def create_secret(self, call: Call) -> dict[str, Any]:
        parent = call.params["parent"]
        secret_id = call.arg("secretId") or ""
        if not SECRET_ID.fullmatch(secret_id):
            raise ApiError(400, f"Invalid secret_id {secret_id!r}: 1-255 letters, digits, '-' and '_'.")
        body = call.json() or {}
        if not isinstance(body, dict):
            raise ApiError(400, "Invalid JSON payload received. Expected an object for 'secret'.")
        problems = self.api.check_fields("Secret", body)
        if problems:
            raise ApiError(400, f"Invalid JSON payload received: {problems[0]}")
        if "/locations/" in parent:
            raise ApiError(400, "Regional secrets are not served by this stand-in.")
        name = self._secret_name(f"{parent}/secrets/{secret_id}")
        if name in self.state["secrets"]:
            raise ApiError(409, f"Secret [{name}] already exists.", "ALREADY_EXISTS")
        replication = body.get("replication")
        if not replication or not (
            replication.get("automatic") is not None or replication.get("userManaged")
        ):
            raise ApiError(400, "Secret.replication must be set (automatic or userManaged).")
        secret: dict[str, Any] = {
            "name": name,
            "replication": replication,
            "createTime": rfc3339(self.now()),
            "etag": _etag(),
        }
        if body.get("labels"):
            secret["labels"] = self._check_labels(body["labels"])
        if body.get("annotations"):
            secret["annotations"] = self._check_annotations(body["annotations"])
        if body.get("topics"):
            secret["topics"] = self._check_topics(body["topics"])
        if body.get("versionAliases"):
            raise ApiError(400, "Version aliases must name existing versions; a new secret has none.")
        for key in ("rotation", "expireTime", "ttl", "versionDestroyTtl"):
            if body.get(key):
                secret[key] = body[key]
        if "ttl" in secret:
            secret["expireTime"] = rfc3339(self.now() + timedelta(seconds=_seconds(secret.pop("ttl"), "ttl")))
        self._check_rotation(secret)
        self.state["secrets"][name] = {"secret": secret, "versions": {}, "next": 1}
        self.changed()
        self._notify(secret, "SECRET_CREATE", secret)
        return secret

    @handles("GET", "secretmanager.projects.secrets.get")
    def get_secret(self, call: Call) -> dict[str, Any]:
        return self._entry(call.params["name"])["secret"]  # type: ignore[no-any-return]

    @staticmethod
    def _matcher(text: str) -> Callable[[dict[str, Any]], bool]:
        """A predicate for a ListSecrets ``filter``: simple terms joined by spaces or AND."""
        terms = [t for t in re.split(r"\s+(?:AND\s+)?", text.strip()) if t]
        if any(t in ("OR", "NOT") or t.startswith("-") for t in terms):
            raise ApiError(400, f"Unsupported filter {text!r}: the stand-in supports AND of simple terms")
        parsed: list[tuple[str, str, str]] = []  # (field, operator, value)
        for term in terms:
            match = re.fullmatch(r"(labels\.[A-Za-z0-9_-]+|name)(:|=)(.+)", term)
            if match is None:
                raise ApiError(400, f"Invalid filter term {term!r}")
            parsed.append((match[1], match[2], match[3].strip('"')))

        def holds(secret: dict[str, Any], field: str, op: str, value: str) -> bool:
            if field == "name":
                short = str(secret["name"]).rsplit("/", 1)[-1]
                return short == value if op == "=" else value in str(secret["name"])
            labels = secret.get("labels") or {}
            key = field.removeprefix("labels.")
            return key in labels if op == ":" and value == "*" else labels.get(key) == value

        return lambda secret: all(holds(secret, *term) for term in parsed)

    @handles("GET", "secretmanager.projects.secrets.list")
    def list_secrets(self, call: Call) -> dict[str, Any]:
        parent = call.params["parent"]
        prefix = f"projects/{self._project(parent.split('/')[1])}/secrets/"
        match = self._matcher(call.arg("filter") or "")
        found = [
            e["secret"]
            for n, e in sorted(self.state["secrets"].items())
            if n.startswith(prefix) and match(e["secret"])
        ]
        return {"totalSize": len(found), **page_of(call, found, "secrets", max_size=25000)}

    @handles("PATCH", "secretmanager.projects.secrets.patch")
    def patch_secret(self, call: Call) -> dict[str, Any]:
        entry = self._entry(call.params["name"])
        body = call.json() or {}
        if not isinstance(body, dict):
            raise ApiError(400, "Invalid JSON payload received. Expected an object for 'secret'.")
        problems = self.api.check_fields("Secret", body)
        if problems:
            raise ApiError(400, f"Invalid JSON payload received: {problems[0]}")
        raw_mask = [p.strip() for p in (call.arg("updateMask") or "").split(",") if p.strip()]
        if not raw_mask:
            raise ApiError(400, "update_mask is required: name the fields to update.")
        unknown = [p for p in raw_mask if p not in UPDATABLE]
        if unknown:
            raise ApiError(400, f"The field {unknown[0]!r} cannot be updated (update_mask).")
        secret = entry["secret"]
        if body.get("etag") and body["etag"] != secret["etag"]:
            raise _precondition(
                f"etag mismatch: the request's etag {body['etag']} does not match the current etag of "
                f"Secret [{secret['name']}]."
            )
        updated = copy.deepcopy(secret)
        for field in {UPDATABLE[p] for p in raw_mask}:
            value = body.get(field)
            if not value:
                updated.pop(field, None)
            elif field == "labels":
                updated[field] = self._check_labels(value)
            elif field == "annotations":
                updated[field] = self._check_annotations(value)
            elif field == "versionAliases":
                updated[field] = self._check_aliases(entry, value)
            elif field == "topics":
                updated[field] = self._check_topics(value)
            elif field == "ttl":
                updated.pop("ttl", None)
                updated["expireTime"] = rfc3339(self.now() + timedelta(seconds=_seconds(value, "ttl")))
            else:
                updated[field] = value
        self._check_rotation(updated, new_schedule="rotation" in {UPDATABLE[p] for p in raw_mask})
        updated["etag"] = _etag()
        entry["secret"] = updated
        self.changed()
        self._notify(updated, "SECRET_UPDATE", updated)
        return updated  # type: ignore[no-any-return]

    @handles("DELETE", "secretmanager.projects.secrets.delete")
    def delete_secret(self, call: Call) -> dict[str, Any]:
        entry = self._entry(call.params["name"])
        secret = entry["secret"]
        etag = call.arg("etag")
        if etag and etag != secret["etag"]:
            raise _precondition(
                f"etag mismatch: the request's etag {etag} does not match the current etag of "
                f"Secret [{secret['name']}]."
            )
        del self.state["secrets"][secret["name"]]
        self.changed()
        self._notify(secret, "SECRET_DELETE", secret, extra={"deleteType": "REQUESTED"})
        return {}

    # -- versions -------------------------------------------------------------------------------

    @handles("POST", "secretmanager.projects.secrets.addVersion")
    def add_version(self, call: Call) -> dict[str, Any]:
        entry = self._entry(call.params["parent"])
        body = call.json() or {}
        payload = body.get("payload") if isinstance(body, dict) else None
        if not isinstance(payload, dict) or "data" not in payload:
            raise ApiError(400, "payload.data is required.")
        try:
            data = base64.b64decode(payload["data"].replace("-", "+").replace("_", "/"), validate=True)
        except (binascii.Error, AttributeError):
            raise ApiError(400, "Invalid value at 'payload.data' (TYPE_BYTES): not base64") from None
        if len(data) > MAX_PAYLOAD:
            raise ApiError(
                400, f"Secret payload data length must be at most {MAX_PAYLOAD} bytes; got {len(data)} bytes."
            )
        crc = crc32c(data)
        given = payload.get("dataCrc32c")
        if given is not None and _int64(given, "payload.data_crc32c") != crc:
            raise ApiError(
                400,
                "Checksum mismatch: the payload's data_crc32c does not match the CRC32C of payload.data.",
            )
        number = entry["next"]
        entry["next"] = number + 1
        version = {
            "name": f"{entry['secret']['name']}/versions/{number}",
            "createTime": rfc3339(self.now()),
            "state": "ENABLED",
            "replicationStatus": {"automatic": {}},
            "etag": _etag(),
            "clientSpecifiedPayloadChecksum": given is not None,
        }
        entry["versions"][str(number)] = {
            "version": version,
            "data": base64.b64encode(data).decode("ascii"),
            "crc": crc,
        }
        self.changed()
        self._notify(entry["secret"], "SECRET_VERSION_ADD", version, version=str(version["name"]))
        return version

    @handles("GET", "secretmanager.projects.secrets.versions.get")
    def get_version(self, call: Call) -> dict[str, Any]:
        name = call.params["name"]
        entry = self._entry(name)
        return self._version(entry, name.rsplit("/", 1)[-1])["version"]  # type: ignore[no-any-return]

    @handles("GET", "secretmanager.projects.secrets.versions.list")
    def list_versions(self, call: Call) -> dict[str, Any]:
        entry = self._entry(call.params["parent"])
        state_filter = call.arg("filter") or ""
        wanted = None
        if state_filter:
            match = re.fullmatch(r"\s*state\s*[:=]\s*([A-Z]+)\s*", state_filter)
            if match is None:
                raise ApiError(400, f"Unsupported filter {state_filter!r}: the stand-in supports state:X")
            wanted = match[1]
        found = [
            v["version"]
            for _, v in sorted(entry["versions"].items(), key=lambda item: -int(item[0]))
            if wanted is None or v["version"]["state"] == wanted
        ]
        return {"totalSize": len(found), **page_of(call, found, "versions", max_size=25000)}

    @handles("GET", "secretmanager.projects.secrets.versions.access")
    def access_version(self, call: Call) -> dict[str, Any]:
        name = call.params["name"]
        stored = self._version(self._entry(name), name.rsplit("/", 1)[-1])
        version = stored["version"]
        if version["state"] != "ENABLED" or stored["data"] is None:
            raise _precondition(f"Secret Version [{version['name']}] is in {version['state']} state.")
        return {
            "name": version["name"],
            "payload": {"data": stored["data"], "dataCrc32c": str(stored["crc"])},
        }

    def _transition(self, call: Call, event: str) -> dict[str, Any]:
        name = call.params["name"]
        entry = self._entry(name)
        stored = self._version(entry, name.rsplit("/", 1)[-1])
        version = stored["version"]
        etag = (call.json() or {}).get("etag")
        if etag and etag != version["etag"]:
            raise _precondition(
                f"etag mismatch: the request's etag {etag} does not match the current etag of "
                f"Secret Version [{version['name']}]."
            )
        if version["state"] == "DESTROYED":
            raise _precondition(f"Secret Version [{version['name']}] is in DESTROYED state.")
        now = self.now()
        if event == "SECRET_VERSION_DESTROY":
            ttl = entry["secret"].get("versionDestroyTtl")
            if ttl and _seconds(ttl, "version_destroy_ttl") > 0:
                if "scheduledDestroyTime" in version:
                    return version  # type: ignore[no-any-return]
                due = now + timedelta(seconds=_seconds(ttl, "version_destroy_ttl"))
                version.update(state="DISABLED", scheduledDestroyTime=rfc3339(due), etag=_etag())
                event = "SECRET_VERSION_DESTROY_SCHEDULED"
            else:
                version.pop("scheduledDestroyTime", None)
                version.update(state="DESTROYED", destroyTime=rfc3339(now), etag=_etag())
                stored["data"] = None
        else:
            state = "ENABLED" if event == "SECRET_VERSION_ENABLE" else "DISABLED"
            if version["state"] == state and "scheduledDestroyTime" not in version:
                return version  # type: ignore[no-any-return]
            version.pop("scheduledDestroyTime", None)  # enabling cancels a scheduled destruction
            version.update(state=state, etag=_etag())
        self.changed()
        self._notify(entry["secret"], event, version, version=version["name"])
        return version  # type: ignore[no-any-return]

    @handles("POST", "secretmanager.projects.secrets.versions.enable")
    def enable_version(self, call: Call) -> dict[str, Any]:
        return self._transition(call, "SECRET_VERSION_ENABLE")

    @handles("POST", "secretmanager.projects.secrets.versions.disable")
    def disable_version(self, call: Call) -> dict[str, Any]:
        return self._transition(call, "SECRET_VERSION_DISABLE")

    @handles("POST", "secretmanager.projects.secrets.versions.destroy")
    def destroy_version(self, call: Call) -> dict[str, Any]:
        return self._transition(call, "SECRET_VERSION_DESTROY")

    # -- notifications ---------------------------------------------------------------------------

    def _notify(
        self,
        secret: dict[str, Any],
        event: str,
        data: dict[str, Any],
        *,
        version: str | None = None,
        extra: dict[str, str] | None = None,
    ) -> None:
        topics = [t["name"] for t in secret.get("topics") or []]
        if not topics:
            return
        attributes = {
            "eventType": event,
            "secretId": secret["name"],
            "dataFormat": "JSON_API_V1",
            "timestamp": rfc3339(self.now()),
            **({"versionId": version} if version else {}),
            **(extra or {}),
        }
        body = json.dumps(data).encode()
        if self._publisher_thread is None:
            self._publisher_thread = threading.Thread(
                target=self._publisher, name="standin-sm-events", daemon=True
            )
            self._publisher_thread.start()
        for topic in topics:
            self._events.put((topic, body, attributes))

    def _publisher(self) -> None:
        client = None
        try:
            from google.cloud import pubsub_v1

            client = pubsub_v1.PublisherClient()  # honours PUBSUB_EMULATOR_HOST
        except Exception as exc:
            self.publish_errors.append(f"no Pub/Sub publisher: {exc}")
            print(f"secretmanager stand-in: no Pub/Sub publisher, events dropped: {exc}", file=sys.stderr)
        try:
            while True:
                item = self._events.get()
                try:
                    if item is None:
                        return
                    if client is not None:
                        topic, data, attributes = item
                        client.publish(topic, data, **attributes).result(timeout=30)
                except Exception as exc:  # keep serving; the log says what got lost
                    self.publish_errors.append(str(exc))
                    print(f"secretmanager stand-in: publish failed: {exc}", file=sys.stderr)
                finally:
                    self._events.task_done()
        finally:
            if client is not None:
                client.stop()
                client.transport.close()

    def flush(self) -> None:
        """Wait until every queued notification is published."""
        if self._publisher_thread is not None:
            self._events.join()

    def close(self) -> None:
        if self._publisher_thread is not None:
            self._events.put(None)
            self._publisher_thread.join(timeout=60)
            self._publisher_thread = None

    # -- test hooks -----------------------------------------------------------------------------

    def rotate(self, name: str, topics: list[str] | None = None) -> dict[str, Any]:
        """Publish SECRET_ROTATE for ``name`` as Secret Manager does at ``nextRotationTime``."""
        with self.lock:
            entry = self._entry(name)
            secret = entry["secret"]
            rotation = secret.get("rotation") or {}
            if rotation.get("nextRotationTime") and rotation.get("rotationPeriod"):
                following = _parse_time(rotation["nextRotationTime"]) + timedelta(
                    seconds=_seconds(rotation["rotationPeriod"], "rotation_period")
                )
                rotation["nextRotationTime"] = rfc3339(following)
                self.changed()
            target = {**secret, "topics": [{"name": t} for t in topics]} if topics else secret
            if not target.get("topics"):
                raise ApiError(400, f"Secret [{secret['name']}] has no topics: Secret.topics must be set.")
            self._notify(target, "SECRET_ROTATE", secret)
            return {"secret": secret["name"], "topics": [t["name"] for t in target["topics"]]}

    def _rotate_hook(self, request: Request) -> dict[str, Any]:
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or not isinstance(body.get("secret"), str):
            raise ApiError(400, 'body must be {"secret": "projects/P/secrets/S"}')
        if not re.fullmatch(r"projects/[^/]+/secrets/[^/]+", body["secret"]):
            raise ApiError(400, "secret must be projects/P/secrets/S")
        topics = body.get("topics")
        if topics is not None and not (
            isinstance(topics, list) and all(TOPIC.fullmatch(str(t)) for t in topics)
        ):
            raise ApiError(400, "topics must be a list of projects/P/topics/T")
        return self.rotate(body["secret"], topics)

    def _shift_clock(self, request: Request) -> dict[str, Any]:
        body = request.get_json(silent=True) or {}
        offset = body.get("offset_seconds")
        if not isinstance(offset, int | float):
            raise ApiError(400, 'body must be {"offset_seconds": N}')
        self.state["clock_offset"] = float(offset)
        self.changed()
        return {"now": rfc3339(self.now())}

    # -- inspection for tests (no HTTP) ----------------------------------------------------------

    def payloads(self) -> list[bytes]:
        """Every payload still stored (leak scans)."""
        with self.lock:
            return [
                base64.b64decode(v["data"])
                for e in self.state["secrets"].values()
                for v in e["versions"].values()
                if v["data"] is not None
            ]


def start(port: int = 0, **opts: Any) -> Handle:
    """Serve a :class:`SecretManager` stand-in in this process (``opts`` as its constructor takes)."""
    return serve(SecretManager(**opts), port)


def main(argv: list[str] | None = None) -> None:
    parser = base_parser("Secret Manager v1 stand-in")
    parser.add_argument(
        "--project-number-map", action="append", default=[], help="PROJECT=NUMBER (repeat or comma-separate)"
    )
    args = parser.parse_args(argv)
    numbers = {}
    for item in ",".join(args.project_number_map).split(","):
        if item.strip():
            project, _, number = item.partition("=")
            numbers[project.strip()] = number.strip()
    standin = SecretManager(
        project_numbers=numbers,
        state_file=args.state_file,
        check_fields=args.check_fields,
    )
    run_forever(standin, args.port)


if __name__ == "__main__":
    main(sys.argv[1:])
