"""Turn one delivered payload into one typed event.

The same facts reach gatehouse in several wrappers: a Pub/Sub push envelope from a log sink or a
notification channel, an Eventarc CloudEvent (structured JSON, or the bare LogEntry that is the body
of a binary-mode event), a Cloud Monitoring incident, a Secret Manager notification, or a command
someone published. This module recognises the wrapper by its shape (never by trusting one field),
unwraps it and returns exactly one of five frozen events. Entry points therefore never touch raw
JSON, use cases never see a wrapper, and the same log entry gets the same dedupe ``id`` whichever
way it arrived. Events are hints: a ``ServiceChange`` names a service to reconcile, it does not
describe the service's state.

The module is pure (standard library and pydantic only) and total: any input either decodes or
raises :class:`~gatehouse.errors.InputError` with a one-line message, which the entry point logs before
acknowledging, so a bad message never loops. Every byte string parsed here (the payload, and each
base64 ``data`` once decoded) is at most 1 MiB, and JSON nests at most 64 levels. Identifiers that
later reach API paths (project, region, service, secret, proxy, environment) must match strict
patterns; a value that does not is rejected, never passed on.

Commands are JSON objects; unknown keys are rejected::

    {"command": "reconcile", "service": "projects/P/locations/R/services/S" | "all",
     "mode": "plan" | "apply"}                            # mode defaults to "plan"
    {"command": "rotate", "secret": "projects/P/secrets/S" | "all",
     "mode": "plan" | "apply", "force": bool}             # secret defaults to "all", mode to "apply";
                                                          # force: rotate what predates the command
    {"command": "tickets", "mode": "plan" | "apply"}      # mode defaults to "apply"
    {"command": "rollout", "action": "tick" | "advance" | "resume" | "abort"}  # action defaults to "tick"

Each may also carry ``"request_id"`` (a string of 1-128 characters) to correlate logs. P is a
project ID or number, R a region such as ``europe-west1``, S a Cloud Run service name or secret ID.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gatehouse.errors import InputError

MAX_PAYLOAD_BYTES = 1024 * 1024
_MAX_DEPTH = 64
_MAX_INT_BITS = 4096  # far beyond any real field; keeps ints printable (Python caps int->str at 4300 digits)

_PROJECT = r"(?:[a-z][a-z0-9-]{4,28}[a-z0-9]|[0-9]{1,20})"  # project ID or project number
_REGION = r"[a-z]+-[a-z]+[0-9]+"
_SERVICE = r"[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?"
_SM_ID = r"[A-Za-z0-9_-]{1,255}"
_PROJECT_RE = re.compile(_PROJECT)
_REGION_RE = re.compile(_REGION)
_SERVICE_RE = re.compile(_SERVICE)
_SERVICE_NAME_RE = re.compile(rf"projects/{_PROJECT}/locations/{_REGION}/services/{_SERVICE}")
_SECRET_NAME_RE = re.compile(rf"projects/{_PROJECT}/secrets/{_SM_ID}")
_SECRET_VERSION_RE = re.compile(rf"(projects/{_PROJECT}/secrets/{_SM_ID})/versions/[1-9][0-9]{{0,18}}")
_PROXY_RE = re.compile(r"[A-Za-z0-9._-]{1,255}")
_ENVIRONMENT_RE = re.compile(r"[a-z][a-z0-9-]{0,31}")
_URL_RE = re.compile(r"https://[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?(?::[0-9]{1,5})?/?")
_EPOCH_TEXT_RE = re.compile(r"[0-9]{1,19}")
_MAX_EPOCH = 32_503_680_000  # 3000-01-01T00:00:00Z: later times are not real incidents
_DURATION_RE = re.compile(r"([0-9]{1,9})(?:\.[0-9]{1,9})?s")

# Loose shapes of resource names; the captured parts are checked against the strict patterns above.
_V2_SERVICE_PATH = re.compile(r"projects/([^/]+)/locations/([^/]+)/services/([^/]+)")
_V1_SERVICE_PATH = re.compile(r"namespaces/([^/]+)/services/([^/]+)")
_V2_PARENT_PATH = re.compile(r"projects/([^/]+)/locations/([^/]+)")
_V1_PARENT_PATH = re.compile(r"namespaces/([^/]+)")
_JOB_METHOD = re.compile(r"(?:^|[./])(?:Jobs|Executions)\.")
# `resource.label."proxy_name"="x"` and `metric.labels.proxy_name = "x"` in alert-policy filters
_FILTER_PROXY = re.compile(r'\b(?:resource|metric)\.labels?\.(?:"proxy_name"|proxy_name)\s*=\s*"([^"\\]*)"')

_AUDIT_LOG_TYPE = "type.googleapis.com/google.cloud.audit.AuditLog"
_AUDIT_EVENT_TYPE = "google.cloud.audit.log.v1.written"
_PUBSUB_EVENT_TYPE = "google.cloud.pubsub.topic.v1.messagePublished"
_RUN_API = "run.googleapis.com"

# methodName -> (api, change); "/Services.CreateService" is the system_event entry of a service turning Ready
_SERVICE_METHODS: dict[str, tuple[Literal["v1", "v2"], Literal["upsert", "delete"]]] = {
    "google.cloud.run.v1.Services.CreateService": ("v1", "upsert"),
    "google.cloud.run.v1.Services.ReplaceService": ("v1", "upsert"),
    "google.cloud.run.v1.Services.DeleteService": ("v1", "delete"),
    "google.cloud.run.v2.Services.CreateService": ("v2", "upsert"),
    "google.cloud.run.v2.Services.UpdateService": ("v2", "upsert"),
    "google.cloud.run.v2.Services.DeleteService": ("v2", "delete"),
    "/Services.CreateService": ("v1", "upsert"),
}

_GRPC_CODES = (
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
)

_SM_TEST_MESSAGE = "TOPIC_CONFIGURED"  # sent once when topics are configured; carries only eventType
_SM_EVENT_TYPES = frozenset(
    {
        "SECRET_CREATE",
        "SECRET_UPDATE",
        "SECRET_DELETE",
        "SECRET_VERSION_ADD",
        "SECRET_VERSION_ENABLE",
        "SECRET_VERSION_DISABLE",
        "SECRET_VERSION_DESTROY",
        "SECRET_VERSION_DESTROY_SCHEDULED",
        "SECRET_ROTATE",
    }
)
_SM_ATTRIBUTE_EVENT_TYPES = _SM_EVENT_TYPES | {_SM_TEST_MESSAGE}
_PARTS = ("project", "region", "service")
_INCIDENT_STATES: dict[str, Literal["open", "closed"]] = {"open": "open", "closed": "closed"}


# --------------------------------------------------------------------------------------------- events


@dataclass(frozen=True)
class _Event:
    kind: ClassVar[str]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready copy with the event's ``kind`` first."""
        return {"kind": self.kind, **asdict(self)}


@dataclass(frozen=True)
class ServiceChange(_Event):
    """A Cloud Run service was created, changed or deleted: reconcile it."""

    kind: ClassVar[str] = "service-change"
    project: str
    region: str
    service: str
    change: Literal["upsert", "delete"]
    api: Literal["v1", "v2"]
    final: bool  # False for the first entry of a long-running operation that has not finished
    id: str  # same for every delivery of the same log entry
    method: str
    operation_id: str | None
    timestamp: str | None
    principal: str | None
    url: str | None


@dataclass(frozen=True)
class Ignored(_Event):
    """A well-formed payload that needs no action; ``reason`` says what it was."""

    kind: ClassVar[str] = "ignored"
    reason: str


@dataclass(frozen=True)
class Incident(_Event):
    """A Cloud Monitoring incident (schema 1.2). Missing fields are None; the tickets job decides."""

    kind: ClassVar[str] = "incident"
    incident_id: str | None
    state: Literal["open", "closed"] | None
    project: str | None
    environment: str | None
    proxy: str | None
    metric: str | None
    resource_type: str | None
    policy: str | None
    condition: str | None
    started_at: int | None  # epoch seconds; 0 (the console test message) reads as None
    ended_at: int | None
    observed_value: str | None
    threshold_value: str | None
    summary: str | None
    url: str | None
    test: bool  # the console's "send test notification"
    org: str | None = None  # resource.labels.org: the Apigee organization the metric belongs to
    duration: int | None = None  # seconds the condition had to breach before it fired (conditionThreshold)


@dataclass(frozen=True)
class SecretEvent(_Event):
    """A Secret Manager notification (attributes plus the Secret or SecretVersion JSON)."""

    kind: ClassVar[str] = "secret-event"
    event_type: str
    secret: str
    version: str | None
    timestamp: str | None
    delete_type: str | None
    data_format: str | None
    rotation: dict[str, str | None] | None
    labels: dict[str, str]
    annotations: dict[str, str]


@dataclass(frozen=True)
class Command(_Event):
    """An operator's request; ``service`` is set for reconcile, ``secret`` for rotate."""

    kind: ClassVar[str] = "command"
    command: Literal["reconcile", "rotate", "tickets", "rollout"]
    mode: Literal["plan", "apply"]
    service: str | None = None
    secret: str | None = None
    request_id: str | None = None
    # rotate: make every target due whose current credential predates the command
    force: bool = False
    # rollout: tick (the scheduled one) | advance | resume | abort
    action: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        if self.command != "rollout":
            del out["action"]
        if self.command != "reconcile":
            del out["service"]
        if self.command != "rotate":
            del out["secret"]
            del out["force"]
        return out


Event: TypeAlias = ServiceChange | Ignored | Incident | SecretEvent | Command


# ------------------------------------------------------------------------------------------ public API


def decode(payload: bytes | str | Mapping[str, Any], *, attributes: Mapping[str, str] | None = None) -> Event:
    """Decode one payload exactly as a handler received it.

    Args:
        payload: the HTTP body, file content or already-parsed JSON. With ``attributes``, the data
            of a Pub/Sub message the caller already unwrapped (e.g. from a pull subscription).
        attributes: that message's attributes, or None when ``payload`` is a whole delivery.

    Returns:
        The one event the payload carries.

    Raises:
        InputError: the payload is malformed, too large, or of no known shape.
    """
    if attributes is not None:
        attrs = _attributes(attributes, "attributes")
        empty = isinstance(payload, bytes | bytearray | memoryview | str) and not payload
        return _decode_message(attrs, None if empty else _load(payload, "message.data"))
    return _decode_document(_load(payload, "payload"), "payload", outer=True)


def decode_cloud_event(ce_attributes: Mapping[str, Any], data: Any) -> Event:
    """Decode what a functions-framework CloudEvent function receives.

    Args:
        ce_attributes: the CloudEvent attributes (``type``, ``source``, ``id``, extensions...).
        data: the event data as a mapping, bytes or text.

    Returns:
        The one event the CloudEvent carries.

    Raises:
        InputError: unsupported event type, or malformed data.
    """
    if not isinstance(ce_attributes, Mapping):
        raise InputError(f"CloudEvent attributes are {_describe(ce_attributes)}, expected a mapping")
    event_type = ce_attributes.get("type")
    if event_type not in (_AUDIT_EVENT_TYPE, _PUBSUB_EVENT_TYPE):
        if event_type is None:
            raise InputError("CloudEvent has no type")
        raise InputError(f"unsupported CloudEvent type {_show(event_type)}")
    if data is None:
        raise InputError(f"{event_type} CloudEvent has no data")
    doc = _obj(_load(data, "CloudEvent data"), "CloudEvent data")
    if event_type == _AUDIT_EVENT_TYPE:
        return _log_entry_event(doc)
    if "message" not in doc:
        raise InputError("messagePublished CloudEvent data has no message")
    return _push_message(doc["message"])


# --------------------------------------------------------------------------------- bytes -> JSON value


def _load(payload: object, where: str) -> Any:
    if isinstance(payload, bytes | bytearray | memoryview | str):
        return _parse_json(payload, where)
    if isinstance(payload, Mapping):
        # Already parsed by the caller: the byte limit does not apply, depth and value types do.
        return _plain(payload, where, 0)
    raise InputError(f"{where} is {_describe(payload)}, expected bytes, text or a mapping")


def _parse_json(raw: bytes | bytearray | memoryview | str, where: str) -> Any:
    try:
        data = raw.encode("utf-8") if isinstance(raw, str) else bytes(raw)
    except UnicodeEncodeError:
        raise InputError(f"{where} holds a lone surrogate, not valid Unicode") from None
    if len(data) > MAX_PAYLOAD_BYTES:
        raise InputError(f"{where} is {len(data)} bytes, over the 1 MiB limit")
    if not data.strip():
        raise InputError(f"{where} is empty")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{where} is not UTF-8 (bad byte at offset {exc.start})") from None
    try:
        value = json.loads(text, parse_float=_finite_float, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise InputError(f"{where} is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise InputError(f"{where} is nested deeper than {_MAX_DEPTH} levels") from None
    except ValueError as exc:  # from the hooks below, or an integer over Python's digit limit
        raise InputError(f"{where} is not JSON: {str(exc).split(';')[0]}") from None
    return _plain(value, where, 0)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:20]} is out of range")
    return value


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _plain(value: object, where: str, depth: int) -> Any:
    """Copy into plain dict/list/scalars, rejecting deep nesting and anything JSON cannot hold."""
    if depth > _MAX_DEPTH:
        raise InputError(f"{where} is nested deeper than {_MAX_DEPTH} levels")
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return _unicode(value, where)
    if isinstance(value, int):
        if value.bit_length() > _MAX_INT_BITS:
            raise InputError(f"{where} holds an integer too large to be meaningful")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InputError(f"{where} holds a non-finite number")
        return value
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise InputError(f"{where} has a key that is {_describe(key)}, not a string")
            out[_unicode(key, where)] = _plain(item, where, depth + 1)
        return out
    if isinstance(value, list | tuple):
        return [_plain(item, where, depth + 1) for item in value]
    raise InputError(f"{where} holds {_describe(value)}, not a JSON value")


def _unicode(text: str, where: str) -> str:
    """``text`` unless it holds a lone surrogate (JSON can escape one; UTF-8 cannot encode it)."""
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise InputError(f"{where} holds a lone surrogate, not valid Unicode") from None
    return text


def _b64decode(value: object, where: str) -> bytes:
    if not isinstance(value, str):
        raise InputError(f"{where} is {_describe(value)}, expected a base64 string")
    if len(value) > 2 * MAX_PAYLOAD_BYTES:  # coarse guard before decoding; exact check below
        raise InputError(f"{where} is {len(value)} base64 characters, over the 1 MiB limit")
    # proto3 JSON allows standard or URL-safe alphabet, with or without padding
    text = value.replace("-", "+").replace("_", "/")
    try:
        data = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except ValueError:
        raise InputError(f"{where} is not valid base64") from None
    if len(data) > MAX_PAYLOAD_BYTES:
        raise InputError(f"{where} decodes to {len(data)} bytes, over the 1 MiB limit")
    return data


# ------------------------------------------------------------------------------------ shape dispatch


def _decode_document(doc: Any, where: str, *, outer: bool) -> Event:
    """Dispatch on shape. Wrappers (CloudEvent, envelope, bare message) are only accepted outermost."""
    doc = _obj(doc, where)
    if outer and "specversion" in doc:
        return _structured_cloud_event(doc)
    if outer and "message" in doc:
        return _push_message(doc["message"])
    if "protoPayload" in doc or "logName" in doc:
        return _log_entry_event(doc)
    if "incident" in doc:
        return _incident_event(doc)
    if "command" in doc:
        return _command_event(doc)
    if outer and "attributes" in doc:  # a bare Pub/Sub message: {"attributes": {...}, "data": b64 or object}
        attrs = _attributes(doc["attributes"], "attributes")
        data = doc.get("data")
        return _decode_message(attrs, data if isinstance(data, dict) else _message_data(data, "data"))
    keys = ", ".join(_show(key, 40) for key in sorted(doc)[:6]) or "none"
    raise InputError(
        f"{where} has an unrecognised shape (top-level keys: {keys}); expected a Pub/Sub push envelope, "
        "CloudEvent, LogEntry, Monitoring incident, Secret Manager notification or command"
    )


def _structured_cloud_event(doc: dict[str, Any]) -> Event:
    attributes = {key: value for key, value in doc.items() if key not in ("data", "data_base64")}
    if "data_base64" in doc:
        return decode_cloud_event(attributes, _b64decode(doc["data_base64"], "data_base64"))
    return decode_cloud_event(attributes, doc.get("data"))


def _push_message(message: Any) -> Event:
    message = _obj(message, "message")
    attrs = _attributes(message.get("attributes"), "message.attributes")
    return _decode_message(attrs, _message_data(message.get("data"), "message.data"))


def _message_data(value: Any, where: str) -> Any:
    """The JSON inside a message's base64 ``data``; None when the message has no data."""
    if value is None or value == "":
        return None
    return _parse_json(_b64decode(value, where), where)


def _decode_message(attrs: dict[str, str], data: Any) -> Event:
    if "secretId" in attrs or attrs.get("eventType") in _SM_ATTRIBUTE_EVENT_TYPES:
        return _secret_event(attrs, data)
    if data is None:
        raise InputError("Pub/Sub message has no data and is not a Secret Manager notification")
    return _decode_document(data, "message.data", outer=False)


def _attributes(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InputError(f"{where} is {_describe(value)}, expected an object")
    for key, item in value.items():
        if not isinstance(key, str) or not isinstance(item, str):
            raise InputError(f"{where} must map strings to strings ({_show(key)} does not)")
    return dict(value)


# ------------------------------------------------------------------------------- audit log -> change


def _log_entry_event(entry: dict[str, Any]) -> ServiceChange | Ignored:
    if entry.get("protoPayload") is None:
        return Ignored("not an audit log entry (no protoPayload)")
    proto = _obj(entry["protoPayload"], "LogEntry.protoPayload")
    payload_type = _opt_str(proto, "@type", "LogEntry.protoPayload")
    if payload_type is not None and payload_type != _AUDIT_LOG_TYPE:
        return Ignored(f"not an audit log entry: protoPayload is {_clean(payload_type)}")
    api_name = _opt_str(proto, "serviceName", "LogEntry.protoPayload")
    method = _opt_str(proto, "methodName", "LogEntry.protoPayload")
    if api_name is not None and api_name != _RUN_API:
        return Ignored(f"not a Cloud Run entry: serviceName {_clean(api_name)} ({_clean(method or '-')})")
    if method is None:
        raise InputError("LogEntry has no protoPayload.methodName")
    resource = _opt_obj(entry, "resource", "LogEntry")
    if _opt_str(resource, "type", "LogEntry.resource") == "cloud_run_job" or _JOB_METHOD.search(method):
        return Ignored(f"Cloud Run job: {_clean(method)}")
    if method not in _SERVICE_METHODS:
        return Ignored(f"not a Cloud Run service method: {_clean(method)}")
    failure = _failure(proto)
    if failure is not None:
        return Ignored(failure)

    api, change = _SERVICE_METHODS[method]
    project, region, service = _locate(entry, proto, method)
    operation = entry.get("operation")
    if operation is None:  # synchronous v1 call or system event: nothing more will follow
        final, operation_id = True, None
    else:
        operation = _obj(operation, "LogEntry.operation")
        last = operation.get("last", False)
        if not isinstance(last, bool):
            raise InputError(f"LogEntry.operation.last is {_describe(last)}, expected a boolean")
        final, operation_id = last, _opt_str(operation, "id", "LogEntry.operation")
    timestamp = _opt_str(entry, "timestamp", "LogEntry")
    if timestamp is None:  # `gcloud logging read` captures may carry it only inside protoPayload
        timestamp = _opt_str(proto, "timestamp", "LogEntry.protoPayload")
    principal = _opt_str(
        _opt_obj(proto, "authenticationInfo", "LogEntry.protoPayload"),
        "principalEmail",
        "LogEntry.protoPayload.authenticationInfo",
    )
    return ServiceChange(
        project=project,
        region=region,
        service=service,
        change=change,
        api=api,
        final=final,
        id=_entry_id(entry, timestamp),
        method=method,
        operation_id=operation_id,
        timestamp=timestamp,
        principal=principal,
        url=_service_url(proto),
    )


def _failure(proto: dict[str, Any]) -> str | None:
    """Why the entry records a failed call, or None. The system event has a message but no code."""
    status = _opt_obj(proto, "status", "LogEntry.protoPayload")
    code = status.get("code")
    if code is None:
        return None
    if isinstance(code, bool) or not isinstance(code, int):
        raise InputError(f"LogEntry.protoPayload.status.code is {_describe(code)}, expected an integer")
    if code == 0:
        return None
    name = _GRPC_CODES[code] if 0 <= code < len(_GRPC_CODES) else "UNKNOWN"
    message = _opt_str(status, "message", "LogEntry.protoPayload.status") or "no message"
    return f"failed operation (code {code} {name}): {_clean(message)}"


def _locate(entry: dict[str, Any], proto: dict[str, Any], method: str) -> tuple[str, str, str]:
    """(project, region, service) from resource.labels, then resourceName, then the request."""
    labels = _opt_obj(_opt_obj(entry, "resource", "LogEntry"), "labels", "LogEntry.resource")
    request = _opt_obj(proto, "request", "LogEntry.protoPayload")
    where_labels, where_request = "LogEntry.resource.labels", "LogEntry.protoPayload.request"
    projects = [_candidate(labels, "project_id", where_labels)]
    regions = [_candidate(labels, "location", where_labels)]
    services = [_candidate(labels, "service_name", where_labels)]

    names = [
        _candidate(proto, "resourceName", "LogEntry.protoPayload"),
        _candidate(request, "name", where_request),
        _candidate(_opt_obj(request, "service", where_request), "name", f"{where_request}.service"),
    ]
    for name, where in names:
        if name is None:
            continue
        if match := _V2_SERVICE_PATH.fullmatch(name):
            projects.append((match[1], where))
            regions.append((match[2], where))
            services.append((match[3], where))
        elif match := _V1_SERVICE_PATH.fullmatch(name):
            projects.append((match[1], where))
            services.append((match[2], where))

    parent = _opt_str(request, "parent", where_request)
    if parent is not None:
        if match := _V2_PARENT_PATH.fullmatch(parent):
            projects.append((match[1], f"{where_request}.parent"))
            regions.append((match[2], f"{where_request}.parent"))
        elif match := _V1_PARENT_PATH.fullmatch(parent):
            projects.append((match[1], f"{where_request}.parent"))
    services.append(_candidate(request, "serviceId", where_request))
    regions.append(_candidate(request, "region", where_request))
    locations = _opt_obj(proto, "resourceLocation", "LogEntry.protoPayload").get("currentLocations")
    if locations is not None and not isinstance(locations, list):
        raise InputError("LogEntry.protoPayload.resourceLocation.currentLocations is not an array")
    if locations:
        where = "LogEntry.protoPayload.resourceLocation.currentLocations[0]"
        regions.append((_str_or_none(locations[0], where), where))

    project = _first_valid(projects, _PROJECT_RE, "project")
    region = _first_valid(regions, _REGION_RE, "region")
    service = _first_valid(services, _SERVICE_RE, "service name")
    if project is None or region is None or service is None:
        missing = [
            what for what, value in zip(_PARTS, (project, region, service), strict=True) if value is None
        ]
        raise InputError(
            f"{method} entry names no {' or '.join(missing)} "
            "(looked in resource.labels, resourceName, request and resourceLocation)"
        )
    return project, region, service


def _service_url(proto: dict[str, Any]) -> str | None:
    """The URL in a v1 response (``status.url``) or a v2 Service response (``uri``), if any."""
    where = "LogEntry.protoPayload.response"
    response = _opt_obj(proto, "response", "LogEntry.protoPayload")
    status = _opt_obj(response, "status", where)
    return _first_valid(
        [_candidate(status, "url", f"{where}.status"), _candidate(response, "uri", where)],
        _URL_RE,
        "https URL",
    )


def _entry_id(entry: dict[str, Any], timestamp: str | None) -> str:
    """Cloud Logging treats (logName, insertId, timestamp) as an entry's identity; hash that."""
    log_name = _opt_str(entry, "logName", "LogEntry")
    insert_id = _opt_str(entry, "insertId", "LogEntry")
    if insert_id is None:  # not seen in practice: fall back to the whole entry, canonically encoded
        basis = json.dumps(entry, sort_keys=True, separators=(",", ":"))
    else:
        basis = "\n".join((log_name or "", insert_id, timestamp or ""))
    return hashlib.sha256(basis.encode("utf-8")).hexdigest()[:32]


# -------------------------------------------------------------------------------- incident notification


def _incident_event(doc: dict[str, Any]) -> Incident:
    incident = _obj(doc["incident"], "incident")
    version = _opt_str(doc, "version", "notification")
    resource = _opt_obj(incident, "resource", "incident")
    resource_labels = _opt_obj(resource, "labels", "incident.resource")
    metric = _opt_obj(incident, "metric", "incident")
    metric_labels = _opt_obj(metric, "labels", "incident.metric")
    condition = _opt_obj(incident, "condition", "incident")
    threshold = _opt_obj(condition, "conditionThreshold", "incident.condition")

    raw_state = _opt_str(incident, "state", "incident")
    state = None if raw_state is None else _INCIDENT_STATES.get(raw_state.lower())  # test message: "OPEN"
    if raw_state is not None and state is None:
        raise InputError(f"incident.state {_show(raw_state)} is neither open nor closed")
    policy_filter = _opt_str(threshold, "filter", "incident.condition.conditionThreshold")
    filter_proxy = _FILTER_PROXY.search(policy_filter) if policy_filter else None

    project = _first_valid(
        [
            _candidate(incident, "scoping_project_id", "incident"),
            _candidate(resource_labels, "project_id", "incident.resource.labels"),
        ],
        _PROJECT_RE,
        "project",
    )
    environment = _first_valid(
        [
            _candidate(resource_labels, "env", "incident.resource.labels"),
            _candidate(resource_labels, "environment", "incident.resource.labels"),
            _candidate(metric_labels, "env", "incident.metric.labels"),
            _candidate(metric_labels, "environment", "incident.metric.labels"),
        ],
        _ENVIRONMENT_RE,
        "Apigee environment name",
    )
    proxy = _first_valid(
        [
            _candidate(resource_labels, "proxy_name", "incident.resource.labels"),
            _candidate(metric_labels, "proxy_name", "incident.metric.labels"),
            (filter_proxy[1] if filter_proxy else None, "incident.condition.conditionThreshold.filter"),
        ],
        _PROXY_RE,
        "Apigee proxy name",
    )
    return Incident(
        incident_id=_opt_str(incident, "incident_id", "incident"),
        state=state,
        project=project,
        environment=environment,
        proxy=proxy,
        metric=_opt_str(metric, "type", "incident.metric"),
        resource_type=_opt_str(resource, "type", "incident.resource"),
        policy=_opt_str(incident, "policy_name", "incident"),
        condition=_opt_str(incident, "condition_name", "incident")
        or _opt_str(condition, "displayName", "incident.condition"),
        started_at=_opt_epoch(incident, "started_at"),
        ended_at=_opt_epoch(incident, "ended_at"),
        observed_value=_opt_value_text(incident, "observed_value"),
        threshold_value=_opt_value_text(incident, "threshold_value"),
        summary=_opt_str(incident, "summary", "incident"),
        url=_opt_str(incident, "url", "incident"),
        test=version == "test",
        org=_first_valid(
            [_candidate(resource_labels, "org", "incident.resource.labels")],
            _PROJECT_RE,
            "Apigee organization",
        ),
        duration=_opt_duration(threshold, "incident.condition.conditionThreshold"),
    )


def _opt_epoch(incident: dict[str, Any], key: str) -> int | None:
    value = incident.get(key)
    if isinstance(value, str) and _EPOCH_TEXT_RE.fullmatch(value):
        value = int(value)
    if value is None or (isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63):
        if value is not None and value > _MAX_EPOCH:
            # a time no clock or date library can show: rejected here, once, not in every later run
            raise InputError(f"incident.{key} {value} is out of range (epoch seconds before the year 3000)")
        return value or None  # 0 means unset
    raise InputError(f"incident.{key} is {_describe(value)}, expected epoch seconds")


def _opt_duration(parent: dict[str, Any], where: str) -> int | None:
    """A protobuf Duration in JSON (``"300s"``) as whole seconds; at most a day (Monitoring's limit)."""
    text = _opt_str(parent, "duration", where)
    if text is None:
        return None
    match = _DURATION_RE.fullmatch(text)
    if match is None or int(match[1]) > 86_400:
        raise InputError(f"{where}.duration {_show(text)} is not a duration of 0-86400 seconds")
    return int(match[1])


def _opt_value_text(incident: dict[str, Any], key: str) -> str | None:
    """``observed_value``/``threshold_value`` are strings in schema 1.2; accept a bare number too."""
    value = incident.get(key)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return _opt_str(incident, key, "incident")


# ---------------------------------------------------------------------------------- Secret Manager


def _secret_event(attrs: dict[str, str], data: Any) -> SecretEvent | Ignored:
    event_type = attrs.get("eventType")
    if event_type == _SM_TEST_MESSAGE:
        return Ignored("Secret Manager TOPIC_CONFIGURED test message")
    if event_type is None:
        raise InputError("Secret Manager notification has no eventType attribute")
    if event_type not in _SM_EVENT_TYPES:
        raise InputError(f"unknown Secret Manager eventType {_show(event_type)}")
    secret = attrs.get("secretId")
    if secret is None:
        raise InputError(f"Secret Manager {event_type} notification has no secretId attribute")
    if not _SECRET_NAME_RE.fullmatch(secret):
        raise InputError(f"secretId {_show(secret)} is not projects/P/secrets/S")
    version = attrs.get("versionId")
    if version is not None:
        match = _SECRET_VERSION_RE.fullmatch(version)
        if match is None or match[1] != secret:
            raise InputError(f"versionId {_show(version)} is not a version of {secret}")

    body = {} if data is None else _obj(data, "message.data")
    rotation = body.get("rotation")
    if rotation is not None:
        rotation = _obj(rotation, "message.data.rotation")
        rotation = {
            "next_rotation_time": _opt_str(rotation, "nextRotationTime", "message.data.rotation"),
            "rotation_period": _opt_str(rotation, "rotationPeriod", "message.data.rotation"),
        }
    return SecretEvent(
        event_type=event_type,
        secret=secret,
        version=version,
        timestamp=attrs.get("timestamp"),
        delete_type=attrs.get("deleteType"),
        data_format=attrs.get("dataFormat"),
        rotation=rotation,
        labels=_attributes(body.get("labels"), "message.data.labels"),
        annotations=_attributes(body.get("annotations"), "message.data.annotations"),
    )


# ----------------------------------------------------------------------------------------- commands


class _CommandModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    request_id: str | None = Field(default=None, min_length=1, max_length=128)


class _Reconcile(_CommandModel):
    command: Literal["reconcile"]
    service: str
    mode: Literal["plan", "apply"] = "plan"

    @field_validator("service")
    @classmethod
    def _service(cls, value: str) -> str:
        return _all_or(value, _SERVICE_NAME_RE, "projects/P/locations/R/services/S")

    def event(self) -> Command:
        return Command(command=self.command, mode=self.mode, service=self.service, request_id=self.request_id)


class _Rotate(_CommandModel):
    command: Literal["rotate"]
    secret: str = Field(default="all")
    mode: Literal["plan", "apply"] = "apply"
    force: bool = False

    @field_validator("secret")
    @classmethod
    def _secret(cls, value: str) -> str:
        return _all_or(value, _SECRET_NAME_RE, "projects/P/secrets/S")

    def event(self) -> Command:
        return Command(
            command=self.command,
            mode=self.mode,
            secret=self.secret,
            request_id=self.request_id,
            force=self.force,
        )


class _Tickets(_CommandModel):
    command: Literal["tickets"]
    mode: Literal["plan", "apply"] = "apply"

    def event(self) -> Command:
        return Command(command=self.command, mode=self.mode, request_id=self.request_id)


class _Rollout(_CommandModel):
    command: Literal["rollout"]
    action: Literal["tick", "advance", "resume", "abort"] = "tick"

    def event(self) -> Command:
        return Command(command=self.command, mode="apply", action=self.action, request_id=self.request_id)


_COMMANDS: dict[str, type[_Reconcile | _Rotate | _Tickets | _Rollout]] = {
    "reconcile": _Reconcile,
    "rotate": _Rotate,
    "tickets": _Tickets,
    "rollout": _Rollout,
}


def _all_or(value: str, pattern: re.Pattern[str], shape: str) -> str:
    if value != "all" and not pattern.fullmatch(value):
        raise ValueError(f"must be 'all' or {shape}, got {_show(value)}")
    return value


def _command_event(doc: dict[str, Any]) -> Command:
    name = doc["command"]
    model = _COMMANDS.get(name) if isinstance(name, str) else None
    if model is None:
        raise InputError(f"unknown command {_show(name)} (expected reconcile, rotate, tickets or rollout)")
    try:
        return model.model_validate(doc).event()
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"])
            if error["type"] == "missing":
                problems.append(f"command '{name}' needs '{field}'")
            elif error["type"] == "extra_forbidden":
                problems.append(f"command '{name}' does not take {_show(field)}")
            else:
                problems.append(f"command '{name}': '{field}': {error['msg'].removeprefix('Value error, ')}")
        raise InputError("; ".join(problems)) from None


# ------------------------------------------------------------------------------------------ helpers


def _obj(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InputError(f"{where} is {_describe(value)}, expected an object")
    return value


def _opt_obj(parent: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    """``parent[key]`` as an object; absent or null reads as empty."""
    value = parent.get(key)
    return {} if value is None else _obj(value, f"{where}.{key}")


def _opt_str(parent: dict[str, Any], key: str, where: str) -> str | None:
    """``parent[key]`` as a string; absent, null or empty reads as None."""
    return _str_or_none(parent.get(key), f"{where}.{key}")


def _str_or_none(value: Any, where: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InputError(f"{where} is {_describe(value)}, expected a string")
    return value


def _candidate(parent: dict[str, Any], key: str, where: str) -> tuple[str | None, str]:
    """``parent[key]`` with the path to name in an error, for :func:`_first_valid`."""
    return _opt_str(parent, key, where), f"{where}.{key}"


def _first_valid(candidates: list[tuple[str | None, str]], pattern: re.Pattern[str], what: str) -> str | None:
    """The first present candidate, which must match ``pattern``: a bad value is an error, not skipped."""
    for value, where in candidates:
        if value is not None:
            if not pattern.fullmatch(value):
                raise InputError(f"{where} {_show(value)} is not a valid {what}")
            return value
    return None


def _describe(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__}"


def _show(value: object, limit: int = 160) -> str:
    """A short, single-line rendering of an untrusted value for error messages."""
    if isinstance(value, str) and len(value) > limit:
        return repr(value[:limit]) + "..."
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _clean(text: str, limit: int = 200) -> str:
    """Untrusted text squeezed onto one printable line, for ``Ignored.reason``."""
    text = " ".join("".join(ch if ch.isprintable() else " " for ch in text[: limit * 2]).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
