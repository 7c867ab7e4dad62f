"""The exposure contract: which Cloud Run services get an Apigee proxy, and with which settings.

Service owners speak to gatehouse only through labels and annotations on their Cloud Run service:

- label ``apigee-expose: "true"`` opts in; any other value (or none) leaves the service alone;
- label ``apigee-profile`` picks a security profile (default: the profile set's default);
- annotations under ``gatehouse.dev/`` tune the proxy within the profile's frame (base path,
  environments, rate limit, quota, target timeout, JWT audience, CORS origins) and say which
  sub-paths of the service's base path other services may claim (``allow-subpaths``).

Labels and annotations are written by whoever can deploy the service, so every value is treated
as hostile: each key has an exact ASCII grammar checked with ``re.fullmatch`` and a size bound,
unknown ``gatehouse.dev/`` keys are errors (they are almost always typos), and nothing is ever
stripped or "cleaned" into validity. A bad value raises :class:`ExposureError` naming the key and
the problem, so the owner can fix it; it never reaches the bundle.

Pure module: standard library, pydantic, PyYAML and gatehouse.errors only.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from gatehouse.errors import InputError, TransientError
from gatehouse.profiles import (
    QUOTA_TIME_UNITS,
    AnyAuth,
    JwtAuth,
    ProfileSet,
    check_origins,
    quote_value,
    validate_claim_value,
    validate_origin,
    validate_quota_window,
    validate_rate,
)

LABEL_EXPOSE = "apigee-expose"
LABEL_PROFILE = "apigee-profile"
ANNOTATION_PREFIX = "gatehouse.dev/"
BASE_PATH = ANNOTATION_PREFIX + "base-path"
ENVIRONMENTS = ANNOTATION_PREFIX + "environments"
RATE_LIMIT = ANNOTATION_PREFIX + "rate-limit"
QUOTA = ANNOTATION_PREFIX + "quota"
TARGET_TIMEOUT = ANNOTATION_PREFIX + "target-timeout"
JWT_AUDIENCE = ANNOTATION_PREFIX + "jwt-audience"
CORS_ORIGINS = ANNOTATION_PREFIX + "cors-origins"
ALLOW_SUBPATHS = ANNOTATION_PREFIX + "allow-subpaths"
PRODUCT = ANNOTATION_PREFIX + "product"
PRODUCT_TITLE = ANNOTATION_PREFIX + "product-title"
DESCRIPTION = ANNOTATION_PREFIX + "description"
APPROVAL = ANNOTATION_PREFIX + "approval"
ACCESS = ANNOTATION_PREFIX + "access"
PRODUCT_ANNOTATIONS = (PRODUCT, PRODUCT_TITLE, DESCRIPTION, APPROVAL, ACCESS)
OPENAPI = ANNOTATION_PREFIX + "openapi"
KNOWN_ANNOTATIONS = (
    BASE_PATH,
    ENVIRONMENTS,
    RATE_LIMIT,
    QUOTA,
    TARGET_TIMEOUT,
    JWT_AUDIENCE,
    CORS_ORIGINS,
    ALLOW_SUBPATHS,
    *PRODUCT_ANNOTATIONS,
    OPENAPI,
)
ALLOW_ALL_SUBPATHS = "*"

MAX_VALUE_LENGTH = 2048  # no contract value is anywhere near this; longer input is rejected unread
MAX_BASE_PATH_LENGTH = 255
MAX_ENVIRONMENTS = 16
MAX_ALLOWED_SUBPATHS = 32
TARGET_TIMEOUT_RANGE_MS = (100, 300_000)

_ENV_NAME = re.compile(r"[a-z][a-z0-9-]{0,31}", re.ASCII)
_PATH_SEGMENT = re.compile(r"[A-Za-z0-9._~-]+", re.ASCII)
_QUOTA = re.compile(r"([1-9][0-9]{0,9})/(minute|hour|day|week|month)", re.ASCII)
_TIMEOUT = re.compile(r"([1-9][0-9]{0,6})(ms|s)", re.ASCII)
_SERVICE_URL = re.compile(r"https://(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}", re.ASCII)
_SERVICE_NAME = re.compile(r"[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?", re.ASCII)
# project ids (optionally domain-scoped, "example.com:proj") or project numbers (the v1 namespace)
_PROJECT = re.compile(r"(?:[a-z][a-z0-9.-]{0,62}:)?[a-z][a-z0-9-]{4,28}[a-z0-9]|[0-9]{1,20}", re.ASCII)
_REGION = re.compile(r"[a-z]{2,}(?:-[a-z]+)+[0-9]{1,2}", re.ASCII)
_KEY = re.compile(r"[A-Za-z0-9._/-]{1,320}", re.ASCII)
# product names double as proxy label values (undeploy finds the product from it): a DNS label
_PRODUCT_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?", re.ASCII)
# shown in portals and the Apigee UI: printable ASCII, no markup characters
_PRODUCT_TEXT = re.compile(r"[\x20-\x7e]*", re.ASCII)
_MARKUP = set("<>{}`")
MAX_PRODUCT_TITLE = 100
MAX_PRODUCT_DESCRIPTION = 1000
# Cloud Storage bucket names (dotted names: each part 1-63, at most 222 in all) and object names kept
# to URL-safe ASCII without '..' segments, so the URI reads the same everywhere it is shown
_BUCKET = re.compile(r"[a-z0-9](?:[a-z0-9_.-]{1,220}[a-z0-9])", re.ASCII)
_OBJECT = re.compile(r"[A-Za-z0-9._~!$&'()*+,;=:@%-]+(?:/[A-Za-z0-9._~!$&'()*+,;=:@%-]+)*", re.ASCII)
_REVISION = re.compile(r"[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?", re.ASCII)
_V2_NAME = re.compile(r"projects/([^/]+)/locations/([^/]+)/services/([^/]+)")
_V1_INGRESS = {
    "all": "INGRESS_TRAFFIC_ALL",
    "internal": "INGRESS_TRAFFIC_INTERNAL_ONLY",
    "internal-and-cloud-load-balancing": "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER",
}


class ExposureError(InputError):
    """A label or annotation of an opted-in service is invalid; ``key`` names it."""

    def __init__(self, key: str, problem: str) -> None:
        kind = "annotation" if key.lower().startswith(ANNOTATION_PREFIX) else "label"
        shown = key if _KEY.fullmatch(key) else quote_value(key)
        super().__init__(f"{kind} {shown}: {problem}")
        self.key = key
        self.problem = problem


class ServiceNotReady(TransientError):  # noqa: N818 - the name callers were promised
    """The service opted in but has no URL yet (first revision still starting): retry later."""


@dataclass(frozen=True)
class RunService:
    """The parts of a Cloud Run service that exposure needs, from either Admin API version."""

    project: str
    region: str
    name: str
    uri: str | None
    urls: tuple[str, ...]
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    service_account: str | None
    ingress: str | None
    ready: bool | None  # None: still reconciling / unknown
    generation: int | None
    # the latest ready revision's short name (what a service-path spec was read from); None: unknown
    ready_revision: str | None = None

    @property
    def resource_name(self) -> str:
        return f"projects/{self.project}/locations/{self.region}/services/{self.name}"

    @classmethod
    def from_json(
        cls, doc: Mapping[str, Any], *, project: str | None = None, region: str | None = None
    ) -> RunService:
        """Read a v2 Service or a v1 (Knative, ``gcloud run services describe``) Service.

        ``project``/``region`` override what the document says: v1 documents carry the project
        number, and callers that know the project id should pass it so proxy names stay stable.
        """
        if not isinstance(doc, Mapping):
            raise InputError(f"Cloud Run service must be a JSON object, got {type(doc).__name__}")
        if "apiVersion" in doc or "metadata" in doc:
            service = _from_v1(doc, project=project, region=region)
        elif isinstance(doc.get("name"), str):
            service = _from_v2(doc, project=project, region=region)
        else:
            raise InputError("not a Cloud Run service: expected v2 'name' or v1 'apiVersion'/'metadata'")
        for what, value, pattern in (
            ("project", service.project, _PROJECT),
            ("region", service.region, _REGION),
            ("service name", service.name, _SERVICE_NAME),
        ):
            if pattern.fullmatch(value) is None:
                raise InputError(f"Cloud Run service has an invalid {what}: {quote_value(value)}")
        return service


def _from_v2(doc: Mapping[str, Any], *, project: str | None, region: str | None) -> RunService:
    match = _V2_NAME.fullmatch(doc["name"])
    if match is None:
        raise InputError(
            f"v2 service name must be projects/P/locations/R/services/S, got {quote_value(doc['name'])}"
        )
    template = _mapping(doc, "template")
    condition = _mapping(doc, "terminalCondition")
    state = _optional_str(condition, "state", "terminalCondition.state")
    ready = {"CONDITION_SUCCEEDED": True, "CONDITION_FAILED": False}.get(state or "")
    return RunService(
        project=project or match[1],
        region=region or match[2],
        name=match[3],
        uri=_optional_str(doc, "uri", "uri") or None,
        urls=_str_list(doc.get("urls"), "urls"),
        labels=_str_map(doc.get("labels"), "labels"),
        annotations=_str_map(doc.get("annotations"), "annotations"),
        service_account=_optional_str(template, "serviceAccount", "template.serviceAccount"),
        ingress=_optional_str(doc, "ingress", "ingress"),
        ready=ready,
        generation=_generation(doc.get("generation")),
        ready_revision=_revision_name(doc.get("latestReadyRevision")),
    )


def _revision_name(value: object) -> str | None:
    """The short name of ``projects/P/locations/R/services/S/revisions/NAME`` (or of NAME), when it
    is a valid revision name; anything else counts as unknown."""
    if not isinstance(value, str):
        return None
    short = value.rsplit("/", 1)[-1]
    return short if _REVISION.fullmatch(short) else None


def _from_v1(doc: Mapping[str, Any], *, project: str | None, region: str | None) -> RunService:
    api_version = doc.get("apiVersion")
    if not isinstance(api_version, str) or not api_version.startswith("serving.knative.dev/"):
        raise InputError(f"v1 service needs apiVersion serving.knative.dev/v1, got {api_version!r}")
    if doc.get("kind", "Service") != "Service":
        raise InputError(f"v1 document is a {doc.get('kind')!r}, not a Service")
    metadata = _mapping(doc, "metadata")
    labels = _str_map(metadata.get("labels"), "metadata.labels")
    annotations = _str_map(metadata.get("annotations"), "metadata.annotations")
    name = _optional_str(metadata, "name", "metadata.name")
    namespace = project or _optional_str(metadata, "namespace", "metadata.namespace")
    location = region or labels.get("cloud.googleapis.com/location")
    if not name or not namespace or not location:
        raise InputError(
            "v1 service needs metadata.name, metadata.namespace and a cloud.googleapis.com/location label"
        )
    status = _mapping(doc, "status")
    spec = _mapping(_mapping(_mapping(doc, "spec"), "template"), "spec")
    ready: bool | None = None
    conditions = status.get("conditions", [])
    if not isinstance(conditions, list):
        raise InputError("v1 status.conditions must be a list")
    for condition in conditions:
        if isinstance(condition, Mapping) and condition.get("type") == "Ready":
            ready = {"True": True, "False": False}.get(str(condition.get("status")))
    urls_json = annotations.get("run.googleapis.com/urls")
    urls: tuple[str, ...] = ()
    if urls_json is not None:
        try:
            urls = _str_list(json.loads(urls_json), "run.googleapis.com/urls")
        except ValueError:
            raise InputError("annotation run.googleapis.com/urls is not a JSON list of strings") from None
    ingress = annotations.get("run.googleapis.com/ingress")
    return RunService(
        project=namespace,
        region=location,
        name=name,
        uri=_optional_str(status, "url", "status.url") or None,
        urls=urls,
        labels=labels,
        annotations=annotations,
        service_account=_optional_str(spec, "serviceAccountName", "spec.template.spec.serviceAccountName"),
        ingress=_V1_INGRESS.get(ingress, ingress) if ingress is not None else None,
        ready=ready,
        generation=_generation(metadata.get("generation")),
        ready_revision=_revision_name(status.get("latestReadyRevisionName")),
    )


def _mapping(doc: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = doc.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InputError(f"Cloud Run service field {key} must be an object")
    return value


def _optional_str(doc: Mapping[str, Any], key: str, where: str) -> str | None:
    value = doc.get(key)
    if value is not None and not isinstance(value, str):
        raise InputError(f"Cloud Run service field {where} must be a string")
    return value


def _str_list(value: object, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InputError(f"Cloud Run service field {where} must be a list of strings")
    return tuple(value)


def _str_map(value: object, where: str) -> Mapping[str, str]:
    if value is None:
        return MappingProxyType({})
    if not isinstance(value, Mapping) or not all(
        isinstance(key, str) and isinstance(item, str) for key, item in value.items()
    ):
        raise InputError(f"Cloud Run service field {where} must map strings to strings")
    return MappingProxyType(dict(value))


def _generation(value: object) -> int | None:
    # v2: int64 as a JSON string; v1: a JSON number
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).isdigit():
        raise InputError(f"Cloud Run service generation must be a non-negative integer, got {value!r}")
    return int(value)


# --------------------------------------------------------------------------------------------------
# Desired state


@dataclass(frozen=True)
class NotExposed:
    """The service did not opt in; ``reason`` says why (for status output, not an error)."""

    reason: str


@dataclass(frozen=True)
class QuotaOverride:
    allow: int
    interval: int
    time_unit: str


@dataclass(frozen=True)
class ProductSpec:
    """The API product a service's proxy joins; None values: the annotation is not set."""

    name: str
    title: str | None = None
    description: str | None = None
    approval: str | None = None  # auto | manual
    access: str | None = None  # public | private | internal


@dataclass(frozen=True)
class OpenApiSource:
    """Where a service's spec is: a path on the service (``/openapi.json``), read over HTTPS with
    an ID token for the service URL, or a Cloud Storage object (``gs://bucket/object``)."""

    path: str | None = None
    bucket: str | None = None
    object: str | None = None

    @property
    def uri(self) -> str:
        return self.path if self.path is not None else f"gs://{self.bucket}/{self.object}"


@dataclass(frozen=True)
class ProxySpec:
    """Everything that determines one service's proxy bundle and where it is deployed.

    The per-service overrides are None when the profile's own value applies.
    """

    proxy_name: str
    project: str
    region: str
    service: str
    target_url: str
    audience: str
    base_path: str
    profile: str
    environments: tuple[str, ...]
    rate_limit: str | None = None
    quota: QuotaOverride | None = None
    target_timeout_ms: int | None = None
    jwt_audience: str | None = None
    cors_origins: tuple[str, ...] | None = None
    # sub-paths of base_path other services may claim ("/admin", or "*" for all); not in the bundle
    allow_subpaths: tuple[str, ...] = ()
    # the API product the proxy joins (None: the profile authenticates no caller, so none)
    product: ProductSpec | None = None
    # where the service's OpenAPI spec is (gatehouse.dev/openapi); the spec itself is read later
    openapi: OpenApiSource | None = None
    # the service's latest ready revision: a service-path spec is read again only when it changes.
    # Not in the bundle, so not part of the spec's identity.
    ready_revision: str | None = field(default=None, compare=False)

    @property
    def service_resource_name(self) -> str:
        return f"projects/{self.project}/locations/{self.region}/services/{self.service}"


def proxy_name(project: str, region: str, service: str) -> str:
    """``<service>-<8 hex of sha256("project/region/service")>``.

    Cloud Run service names are already lowercase DNS labels (at most 63 characters), so the
    result matches ``^[A-Za-z0-9_-]+$`` and stays far below Apigee's 255; the hash keeps the same
    service name in two projects or regions apart while the name stays readable. It has no ``.``
    (allowed by the management API but not by the bundle reference). Pass the project *id*
    consistently: a project number gives a different (equally valid) name.
    """
    digest = hashlib.sha256(f"{project}/{region}/{service}".encode()).hexdigest()
    return f"{service}-{digest[:8]}"


def desired(
    service: RunService,
    profiles: ProfileSet,
    *,
    default_environments: Sequence[str],
    default_profile: str | None = None,
    allowed_environments: Collection[str] | None = None,
) -> ProxySpec | NotExposed:
    """Apply the exposure contract to one service.

    Returns :class:`NotExposed` for services that did not opt in, raises :class:`ExposureError`
    for an invalid contract value and :class:`ServiceNotReady` for an opted-in service that has no
    URL yet. ``default_profile`` overrides the profile set's default; ``allowed_environments``
    (None: any valid name) limits what ``gatehouse.dev/environments`` may name.
    """
    expose = service.labels.get(LABEL_EXPOSE)
    if expose is None:
        return NotExposed(f"label {LABEL_EXPOSE} is not set")
    if expose != "true":
        return NotExposed(f"label {LABEL_EXPOSE} is {quote_value(expose)}, not 'true'")

    annotations = _contract_annotations(service.annotations)
    profile_name = _profile_name(service.labels.get(LABEL_PROFILE), profiles, default_profile)
    profile = profiles.profiles[profile_name]
    environments = _environments(annotations.get(ENVIRONMENTS), default_environments, allowed_environments)
    base_path = _base_path(annotations.get(BASE_PATH, f"/{service.name}"))
    rate_limit = _checked(RATE_LIMIT, annotations.get(RATE_LIMIT), validate_rate)
    quota = _quota(annotations.get(QUOTA))
    timeout = _target_timeout(annotations.get(TARGET_TIMEOUT))
    jwt_audience = _jwt_audience(annotations.get(JWT_AUDIENCE), profile.auth)
    credentials = profile.cors is not None and profile.cors.allow_credentials
    cors_origins = _cors_origins(annotations.get(CORS_ORIGINS), allow_credentials=credentials)
    allow_subpaths = _allow_subpaths(annotations.get(ALLOW_SUBPATHS))
    product = _product(annotations, service, public=profile.public)
    openapi = _openapi(annotations.get(OPENAPI))
    if service.uri is None:
        raise ServiceNotReady(f"{service.resource_name} opted in but has no URL yet")
    target_url = _service_url(service.uri)
    return ProxySpec(
        proxy_name=proxy_name(service.project, service.region, service.name),
        project=service.project,
        region=service.region,
        service=service.name,
        target_url=target_url,
        audience=target_url,  # Cloud Run accepts its own URL as audience, never a path below it
        base_path=base_path,
        profile=profile_name,
        environments=environments,
        rate_limit=rate_limit,
        quota=quota,
        target_timeout_ms=timeout,
        jwt_audience=jwt_audience,
        cors_origins=cors_origins,
        allow_subpaths=allow_subpaths,
        product=product,
        openapi=openapi,
        ready_revision=service.ready_revision,
    )


def default_product_name(project: str, region: str, service: str) -> str:
    """The proxy name when it fits a label value (63), else the service name cut to fit before the
    same 8 hex: every service gets its own product unless it names a shared one."""
    name = proxy_name(project, region, service)
    return name if len(name) <= 63 else f"{service[:54].rstrip('-')}-{name[-8:]}"


def _product(annotations: Mapping[str, str], service: RunService, *, public: bool) -> ProductSpec | None:
    given = [key for key in PRODUCT_ANNOTATIONS if key in annotations]
    if public:
        if given:
            raise ExposureError(
                given[0], "the profile authenticates no caller, so the service gets no API product"
            )
        return None
    name = annotations.get(PRODUCT)
    if name is not None and _PRODUCT_NAME.fullmatch(name) is None:
        raise ExposureError(
            PRODUCT,
            f"must be 1-63 lowercase letters, digits or '-', starting and ending with a letter or "
            f"digit (got {quote_value(name)})",
        )
    return ProductSpec(
        name=name or default_product_name(service.project, service.region, service.name),
        title=_product_text(PRODUCT_TITLE, annotations.get(PRODUCT_TITLE), MAX_PRODUCT_TITLE),
        description=_product_text(DESCRIPTION, annotations.get(DESCRIPTION), MAX_PRODUCT_DESCRIPTION),
        approval=_choice(APPROVAL, annotations.get(APPROVAL), ("auto", "manual")),
        access=_choice(ACCESS, annotations.get(ACCESS), ("public", "private", "internal")),
    )


def _product_text(key: str, value: str | None, limit: int) -> str | None:
    if value is None:
        return None
    if not value.strip(" "):
        raise ExposureError(key, "must not be empty")
    if len(value) > limit:
        raise ExposureError(key, f"at most {limit} characters (got {len(value)})")
    if _PRODUCT_TEXT.fullmatch(value) is None or _MARKUP & set(value):
        raise ExposureError(key, f"printable ASCII only, without < > {{ }} or ` (got {quote_value(value)})")
    return value.strip(" ")


def _choice(key: str, value: str | None, allowed: tuple[str, ...]) -> str | None:
    if value is None or value in allowed:
        return value
    raise ExposureError(key, f"must be one of {', '.join(allowed)} (got {quote_value(value)})")


def _contract_annotations(annotations: Mapping[str, str]) -> dict[str, str]:
    """The gatehouse.dev/ annotations, size-checked; unknown keys are errors (typos)."""
    found: dict[str, str] = {}
    for key, value in annotations.items():
        if not key.lower().startswith(ANNOTATION_PREFIX):
            continue
        if key not in KNOWN_ANNOTATIONS:
            close = difflib.get_close_matches(key.lower(), KNOWN_ANNOTATIONS, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            known = ", ".join(KNOWN_ANNOTATIONS)
            raise ExposureError(key, f"unknown gatehouse annotation (known: {known}){hint}")
        if len(value) > MAX_VALUE_LENGTH:
            raise ExposureError(key, f"too long ({len(value)} characters; at most {MAX_VALUE_LENGTH})")
        found[key] = value
    return found


def _profile_name(label: str | None, profiles: ProfileSet, default_profile: str | None) -> str:
    if label is None:
        name = default_profile or profiles.default
        if name not in profiles.profiles:
            raise InputError(f"default profile {name!r} is not defined in the profiles file")
        if profiles.profiles[name].public:
            raise InputError(
                f"default profile {name!r} does not authenticate callers; choose public profiles explicitly"
            )
        return name
    if label not in profiles.profiles:
        raise ExposureError(
            LABEL_PROFILE, f"unknown profile {quote_value(label)} (known: {', '.join(profiles.names)})"
        )
    return label


def _environments(
    value: str | None, default: Sequence[str], allowed: Collection[str] | None
) -> tuple[str, ...]:
    if value is None:
        names = list(default)
        if not names:
            raise InputError(f"no default Apigee environments configured and {ENVIRONMENTS} is not set")
        return tuple(sorted(names))
    names = _split_list(value)
    if not names:
        raise ExposureError(ENVIRONMENTS, "must list at least one Apigee environment")
    if len(names) > MAX_ENVIRONMENTS:
        raise ExposureError(ENVIRONMENTS, f"at most {MAX_ENVIRONMENTS} environments (got {len(names)})")
    for name in names:
        if _ENV_NAME.fullmatch(name) is None:
            raise ExposureError(
                ENVIRONMENTS,
                f"invalid environment name {quote_value(name)} (lowercase letters, digits and '-', "
                "starting with a letter, at most 32)",
            )
        if allowed is not None and name not in allowed:
            raise ExposureError(
                ENVIRONMENTS, f"environment {name!r} is not allowed (allowed: {', '.join(sorted(allowed))})"
            )
    if len(set(names)) != len(names):
        raise ExposureError(ENVIRONMENTS, "an environment is listed more than once")
    return tuple(sorted(names))


def _base_path(value: str) -> str:
    """Apigee BasePath rules, plus: no '/' alone (it would capture every unmatched request)."""

    def fail(problem: str) -> ExposureError:
        return ExposureError(BASE_PATH, f"{problem} (got {quote_value(value)})")

    if not value.startswith("/"):
        raise fail("must start with '/'")
    if value == "/":
        raise fail("'/' alone would route every request of the environment group here; use a prefix")
    if len(value) > MAX_BASE_PATH_LENGTH:
        raise fail(f"must be at most {MAX_BASE_PATH_LENGTH} characters")
    if value.endswith("/"):
        raise fail("must not end with '/'")
    segments = value[1:].split("/")
    for index, segment in enumerate(segments):
        if segment == "":
            raise fail("must not contain '//'")
        if segment in (".", ".."):
            raise fail("must not contain '.' or '..' segments")
        if segment == "*":
            if index == 0:
                raise fail("'*' cannot be the first segment")
            continue
        if "*" in segment:
            raise fail("'*' must be a whole segment, and '**' is not supported")
        if _PATH_SEGMENT.fullmatch(segment) is None:
            raise fail("segments may contain only letters, digits, '.', '_', '~', '-' or be '*'")
    return value


def _allow_subpaths(value: str | None) -> tuple[str, ...]:
    """Sub-paths of this service's base path that other services may claim: '*' alone, or a comma
    list of relative paths ('/admin'), each allowing itself and everything below it."""
    if value is None:
        return ()
    items = _split_list(value)
    if not items:
        raise ExposureError(ALLOW_SUBPATHS, "must list at least one sub-path (or '*')")
    if len(items) > MAX_ALLOWED_SUBPATHS:
        raise ExposureError(ALLOW_SUBPATHS, f"at most {MAX_ALLOWED_SUBPATHS} sub-paths (got {len(items)})")
    if ALLOW_ALL_SUBPATHS in items:
        if len(items) > 1:
            raise ExposureError(ALLOW_SUBPATHS, "'*' cannot be combined with other sub-paths")
        return (ALLOW_ALL_SUBPATHS,)
    for item in items:
        _subpath(item)
    if len(set(items)) != len(items):
        raise ExposureError(ALLOW_SUBPATHS, "a sub-path is listed more than once")
    return tuple(items)


def _subpath(value: str) -> None:
    def fail(problem: str) -> ExposureError:
        return ExposureError(ALLOW_SUBPATHS, f"{problem} (got {quote_value(value)})")

    if not value.startswith("/"):
        raise fail("sub-path must start with '/'")
    if value == "/":
        raise fail("'/' alone is the path itself; '*' allows every sub-path")
    if len(value) > MAX_BASE_PATH_LENGTH:
        raise fail(f"sub-path must be at most {MAX_BASE_PATH_LENGTH} characters")
    if value.endswith("/"):
        raise fail("sub-path must not end with '/'")
    for segment in value[1:].split("/"):
        if segment == "":
            raise fail("sub-path must not contain '//'")
        if segment in (".", ".."):
            raise fail("sub-path must not contain '.' or '..' segments")
        if "*" in segment:
            raise fail("'*' stands alone and allows every sub-path; it is not a segment wildcard here")
        if _PATH_SEGMENT.fullmatch(segment) is None:
            raise fail("segments may contain only letters, digits, '.', '_', '~', '-'")


def _openapi(value: str | None) -> OpenApiSource | None:
    """``/path/on/the/service`` or ``gs://bucket/object``."""
    if value is None:
        return None

    def fail(problem: str) -> ExposureError:
        return ExposureError(OPENAPI, f"{problem} (got {quote_value(value)})")

    if value.startswith("gs://"):
        bucket, _, name = value.removeprefix("gs://").partition("/")
        if _BUCKET.fullmatch(bucket) is None or len(bucket) > 222 or ".." in bucket:
            raise fail("not a Cloud Storage bucket name (gs://bucket/object)")
        if not name or len(name) > 1024 or _OBJECT.fullmatch(name) is None:
            raise fail(
                "the object name must be URL-safe ASCII segments separated by single '/' (gs://bucket/object)"
            )
        if any(part in (".", "..") for part in name.split("/")):
            raise fail("the object name must not contain '.' or '..' segments")
        return OpenApiSource(bucket=bucket, object=name)
    if not value.startswith("/"):
        raise fail("must be a path on the service ('/openapi.json') or gs://bucket/object")
    if len(value) > MAX_BASE_PATH_LENGTH:
        raise fail(f"must be at most {MAX_BASE_PATH_LENGTH} characters")
    segments = value[1:].split("/")
    for segment in segments:
        if segment in ("", ".", ".."):
            raise fail("the path must not contain empty, '.' or '..' segments or end with '/'")
        if _PATH_SEGMENT.fullmatch(segment) is None:
            raise fail("path segments may contain only letters, digits, '.', '_', '~', '-'")
    return OpenApiSource(path=value)


def _quota(value: str | None) -> QuotaOverride | None:
    if value is None:
        return None
    match = _QUOTA.fullmatch(value)
    if match is None:
        units = ", ".join(QUOTA_TIME_UNITS)
        raise ExposureError(QUOTA, f"must look like '1000/hour' (units: {units}); got {quote_value(value)}")
    allow = int(match[1])
    if allow > 1_000_000_000:
        raise ExposureError(QUOTA, f"{allow} requests is more than the 1000000000 gatehouse accepts")
    validate_quota_window(1, match[2])
    return QuotaOverride(allow=allow, interval=1, time_unit=match[2])


def _target_timeout(value: str | None) -> int | None:
    if value is None:
        return None
    match = _TIMEOUT.fullmatch(value)
    if match is None:
        raise ExposureError(TARGET_TIMEOUT, f"must look like '30s' or '1500ms'; got {quote_value(value)}")
    millis = int(match[1]) * (1000 if match[2] == "s" else 1)
    low, high = TARGET_TIMEOUT_RANGE_MS
    if not low <= millis <= high:
        raise ExposureError(TARGET_TIMEOUT, f"must be between {low}ms and {high // 1000}s (got {value})")
    return millis


def _jwt_audience(value: str | None, auth: AnyAuth) -> str | None:
    if not isinstance(auth, JwtAuth):
        if value is not None:
            raise ExposureError(JWT_AUDIENCE, f"the profile's auth mode is {auth.mode!r}, not 'jwt'")
        return None
    if value is None:
        if auth.audience is None:
            raise ExposureError(JWT_AUDIENCE, "required: the profile verifies JWTs but names no audience")
        return None
    return _checked(JWT_AUDIENCE, value, validate_claim_value)


def _cors_origins(value: str | None, *, allow_credentials: bool) -> tuple[str, ...] | None:
    if value is None:
        return None
    origins = _split_list(value)
    if not origins:
        raise ExposureError(CORS_ORIGINS, "must list at least one origin (or '*')")
    for origin in origins:
        if origin != "*":
            _checked(CORS_ORIGINS, origin, validate_origin)
    try:
        check_origins(origins, allow_credentials=allow_credentials)
    except ValueError as exc:
        raise ExposureError(CORS_ORIGINS, str(exc)) from None
    return tuple(origins)


def _service_url(uri: str) -> str:
    url = uri.removesuffix("/")
    if _SERVICE_URL.fullmatch(url) is None:
        raise InputError(f"service URL must be https://host without a path, got {quote_value(uri)}")
    return url


def _split_list(value: str) -> list[str]:
    # spaces and tabs around items are tolerated; any other whitespace fails the item's grammar
    return [item.strip(" \t") for item in value.split(",") if item.strip(" \t")]


def _checked(key: str, value: str | None, validate: Callable[[str], str]) -> str | None:
    if value is None:
        return None
    try:
        return validate(value)
    except ValueError as exc:
        raise ExposureError(key, str(exc)) from None
