"""Security profiles: the platform team's choices of how a Cloud Run service is fronted by Apigee.

A service owner picks a profile by name (label ``apigee-profile``); everything that decides who may
call the service and how hard (authentication, SpikeArrest, Quota, CORS, header rules, target
timeouts and TLS, payload threat protection) lives here, in a YAML file the platform team owns.
Service owners can only adjust the few values the exposure contract lets them (see
:mod:`gatehouse.exposure`).

The file is validated completely at load time so that a typo fails the deploy of gatehouse, not
the first request of some service: unknown keys are errors, duplicate YAML keys are errors, and
every problem is reported with its YAML line and key path. The grammar helpers at the bottom
(rates, origins, audiences) are shared with the exposure contract so both speak one language.

Pure module: standard library, pydantic, PyYAML and gatehouse.errors only.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.functional_validators import AfterValidator
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from gatehouse.errors import InputError

# --------------------------------------------------------------------------------------------------
# Grammar shared with gatehouse.exposure. Every pattern is ASCII-only and used with fullmatch, so
# unicode look-alikes, control characters and trailing newlines never pass.

# Apigee SpikeArrest limits (reference/limits): 1,000 per second, 60,000 per minute.
SPIKE_ARREST_MAX = {"ps": 1000, "pm": 60000}
QUOTA_TIME_UNITS = ("minute", "hour", "day", "week", "month")
# the longest quota window Apigee accepts is one year
_QUOTA_MAX_INTERVAL = {"minute": 525600, "hour": 8760, "day": 366, "week": 52, "month": 12}

_RATE = re.compile(r"([1-9][0-9]{0,5})(ps|pm)", re.ASCII)
_DNS_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_ORIGIN = re.compile(rf"https://(?:{_DNS_LABEL}\.)*{_DNS_LABEL}(?::([0-9]{{1,5}}))?", re.ASCII)
_HTTPS_URL = re.compile(rf"https://(?:{_DNS_LABEL}\.)+{_DNS_LABEL}(?:/[A-Za-z0-9._~%@:+=-]+)*", re.ASCII)
# JWT audiences and issuers: URIs or plain identifiers (Okta "api://default", Google client ids).
# Braces are excluded so that Apigee never reads a value as a message template.
_CLAIM_VALUE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~:/@%+=-]{0,254}", re.ASCII)
_HEADER_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}", re.ASCII)
# profile values may use Apigee message templates ({client_id}); printable ASCII only
_HEADER_VALUE = re.compile(r"[\x20-\x7e]{0,1024}", re.ASCII)
_QUERY_PARAM = re.compile(r"[A-Za-z0-9._~-]{1,128}", re.ASCII)
_SCOPE = re.compile(r"[\x21\x23-\x5b\x5d-\x7a\x7c\x7e]{1,128}", re.ASCII)  # RFC 6749 scope-token, no braces
_STORE_REF = re.compile(r"ref://[A-Za-z0-9_.-]{1,255}", re.ASCII)
_KEY_ALIAS = re.compile(r"[A-Za-z0-9_.-]{1,255}", re.ASCII)
_METHOD = re.compile(r"[A-Z]{1,16}", re.ASCII)
PROFILE_NAME = re.compile(r"[a-z][a-z0-9_-]{0,62}", re.ASCII)  # also a valid Google Cloud label value


def quote_value(value: str, limit: int = 64) -> str:
    """A log-safe rendering of an untrusted value: repr() escapes control and bidi characters."""
    if len(value) > limit:
        return repr(value[:limit]) + f"... ({len(value)} characters)"
    return repr(value)


def validate_rate(value: str) -> str:
    """A SpikeArrest rate such as ``30ps`` or ``600pm``, within Apigee's limits."""
    match = _RATE.fullmatch(value)
    if match is None:
        raise ValueError(
            f"must be a whole number of requests per second or minute, like '30ps' or '600pm' "
            f"(got {quote_value(value)})"
        )
    count, unit = int(match[1]), match[2]
    if count > SPIKE_ARREST_MAX[unit]:
        raise ValueError(f"{value} exceeds Apigee's SpikeArrest limit of {SPIKE_ARREST_MAX[unit]}{unit}")
    return value


def validate_quota_window(interval: int, time_unit: str) -> None:
    """Apigee quota windows run from one minute to one year."""
    if time_unit not in _QUOTA_MAX_INTERVAL:
        raise ValueError(
            f"time unit must be one of {', '.join(QUOTA_TIME_UNITS)} (got {quote_value(time_unit)})"
        )
    if not 1 <= interval <= _QUOTA_MAX_INTERVAL[time_unit]:
        raise ValueError(f"interval {interval} {time_unit} is outside Apigee's range (1 minute to 1 year)")


def validate_origin(value: str) -> str:
    """A CORS origin: ``https://host[:port]`` in lowercase, no path, no trailing slash."""
    match = _ORIGIN.fullmatch(value)
    if match is None or len(value) > 261:
        raise ValueError(
            f"origin must look like 'https://app.example.com' (lowercase, https, no path or trailing slash); "
            f"got {quote_value(value)}"
        )
    if match[1] is not None and not 1 <= int(match[1]) <= 65535:
        raise ValueError(f"origin port out of range in {quote_value(value)}")
    return value


def validate_claim_value(value: str) -> str:
    """A JWT audience or issuer: a URI or identifier of URI characters, at most 255 long."""
    if _CLAIM_VALUE.fullmatch(value) is None:
        raise ValueError(
            "must be 1-255 URI characters (letters, digits and . _ ~ : / @ % + = -), starting with a "
            f"letter or digit; got {quote_value(value)}"
        )
    return value


def _pattern_validator(pattern: re.Pattern[str], what: str) -> AfterValidator:
    def check(value: str) -> str:
        if pattern.fullmatch(value) is None:
            raise ValueError(f"invalid {what}: {quote_value(value)}")
        return value

    return AfterValidator(check)


def _regex_validator(value: str) -> str:
    if not value or len(value) > 1024 or not value.isprintable():
        raise ValueError(f"pattern must be 1-1024 printable characters: {quote_value(value)}")
    try:
        re.compile(value)  # Apigee uses Java regexes; Python's syntax catches the same typos
    except re.error as exc:
        raise ValueError(f"invalid regular expression {quote_value(value)}: {exc}") from None
    return value


HeaderName = Annotated[str, _pattern_validator(_HEADER_NAME, "header name")]
HeaderValue = Annotated[
    str, _pattern_validator(_HEADER_VALUE, "header value (printable ASCII, at most 1024)")
]
QueryParamName = Annotated[str, _pattern_validator(_QUERY_PARAM, "query parameter name")]
OriginOrWildcard = Annotated[
    str, AfterValidator(lambda value: value if value == "*" else validate_origin(value))
]
HttpsUrl = Annotated[str, _pattern_validator(_HTTPS_URL, "https URL")]
ClaimValue = Annotated[str, AfterValidator(validate_claim_value)]
Scope = Annotated[str, _pattern_validator(_SCOPE, "OAuth scope")]
StoreRef = Annotated[str, _pattern_validator(_STORE_REF, "keystore/truststore reference (ref://name)")]
KeyAlias = Annotated[str, _pattern_validator(_KEY_ALIAS, "key alias")]
Method = Annotated[str, _pattern_validator(_METHOD, "HTTP method (upper case)")]
Rate = Annotated[str, AfterValidator(validate_rate)]
RegexPattern = Annotated[str, AfterValidator(_regex_validator)]


# --------------------------------------------------------------------------------------------------
# Models


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ApiKeyAuth(_Model):
    """VerifyAPIKey. The key is read from one header (default ``x-api-key``) or one query parameter."""

    mode: Literal["apikey"]
    header: HeaderName | None = None
    query_param: QueryParamName | None = None

    @model_validator(mode="after")
    def _one_source(self) -> ApiKeyAuth:
        if self.header is not None and self.query_param is not None:
            raise ValueError("set either header or query_param, not both")
        return self

    @property
    def key_header(self) -> str | None:
        """The header carrying the key, or None when it comes in a query parameter."""
        if self.query_param is not None:
            return None
        return self.header or "x-api-key"


class JwtAuth(_Model):
    """VerifyJWT against an OIDC issuer's JWKS (Google Identity by default; Okta or any issuer)."""

    mode: Literal["jwt"]
    jwks_uri: HttpsUrl = "https://www.googleapis.com/oauth2/v3/certs"
    issuer: ClaimValue = "https://accounts.google.com"
    algorithm: Literal["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"] = (
        "RS256"
    )
    # None: every service must set the gatehouse.dev/jwt-audience annotation
    audience: ClaimValue | None = None
    time_allowance_seconds: int = Field(default=60, ge=0, le=600)


class OAuth2Auth(_Model):
    """OAuthV2 VerifyAccessToken: opaque access tokens issued by this Apigee organization."""

    mode: Literal["oauth2"]
    scopes: tuple[Scope, ...] = ()


class NoAuth(_Model):
    """No caller authentication. Only accepted with an explicit acknowledgement."""

    mode: Literal["none"]
    i_understand_this_is_public: bool = False

    @model_validator(mode="after")
    def _acknowledged(self) -> NoAuth:
        if not self.i_understand_this_is_public:
            raise ValueError(
                "auth mode 'none' lets anyone call the service; "
                "set i_understand_this_is_public: true to confirm"
            )
        return self


AnyAuth = ApiKeyAuth | JwtAuth | OAuth2Auth | NoAuth
Auth = Annotated[AnyAuth, Field(discriminator="mode")]
AUTH_MODES = ("apikey", "jwt", "oauth2", "none")


class SpikeArrest(_Model):
    """Smooths bursts for the whole proxy (protects the service, not a per-caller budget)."""

    rate: Rate


class Quota(_Model):
    """Per-caller (or per-proxy) request budget over a window."""

    allow: int = Field(ge=1, le=1_000_000_000)
    interval: int = 1
    time_unit: Literal["minute", "hour", "day", "week", "month"]
    # apikey only: the caller's API product quota wins; the values above are the fallback
    from_product: bool = False
    per: Literal["client", "proxy"] = "client"

    @model_validator(mode="after")
    def _window(self) -> Quota:
        validate_quota_window(self.interval, self.time_unit)
        return self


class Cors(_Model):
    """CORS policy settings; origins may also come from the gatehouse.dev/cors-origins annotation."""

    allow_origins: tuple[OriginOrWildcard, ...] = ()
    allow_methods: tuple[Method, ...] = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
    allow_headers: tuple[HeaderName, ...] = ("origin", "accept", "content-type")
    expose_headers: tuple[HeaderName, ...] = ("*",)
    max_age_seconds: int = Field(default=3600, ge=-1, le=86400)
    allow_credentials: bool = False

    @model_validator(mode="after")
    def _wildcards(self) -> Cors:
        check_origins(self.allow_origins, allow_credentials=self.allow_credentials)
        for name, values in (("allow_headers", self.allow_headers), ("expose_headers", self.expose_headers)):
            if "*" in values and len(values) > 1:
                raise ValueError(f"{name}: '*' cannot be combined with other values")
        if not self.allow_methods:
            raise ValueError("allow_methods must not be empty")
        return self


def check_origins(origins: Sequence[str], *, allow_credentials: bool) -> None:
    """Rules for a list of origins: '*' stands alone and never with credentials; no duplicates."""
    if "*" in origins:
        if len(origins) > 1:
            raise ValueError("'*' cannot be combined with other origins")
        if allow_credentials:
            raise ValueError("'*' cannot be used when the profile allows credentials")
    if len(set(origins)) != len(origins):
        raise ValueError("origins are listed more than once")
    if len(origins) > 32:
        raise ValueError(f"at most 32 origins (got {len(origins)})")


class HeaderOps(_Model):
    """AssignMessage rules for one direction: headers to set (templates allowed) and to remove."""

    set: Mapping[HeaderName, HeaderValue] = Field(default_factory=dict)
    remove: tuple[HeaderName, ...] = ()

    @model_validator(mode="after")
    def _disjoint(self) -> HeaderOps:
        set_names = [name.lower() for name in self.set]
        remove_names = [name.lower() for name in self.remove]
        for names in (set_names, remove_names):
            if len(set(names)) != len(names):
                raise ValueError("a header is listed twice (header names are case-insensitive)")
        both = sorted(set(set_names) & set(remove_names))
        if both:
            raise ValueError(f"headers both set and removed: {', '.join(both)}")
        return self

    @property
    def empty(self) -> bool:
        return not self.set and not self.remove


class HeaderRules(_Model):
    request: HeaderOps = HeaderOps()
    response: HeaderOps = HeaderOps()

    @field_validator("request")
    @classmethod
    def _no_authorization(cls, value: HeaderOps) -> HeaderOps:
        if any(name.lower() == "authorization" for name in value.set):
            raise ValueError("request headers cannot set Authorization: it carries the Google ID token")
        return value


class Mtls(_Model):
    """Client certificate Apigee presents to the target (keystore by reference, so it can rotate)."""

    key_store: StoreRef
    key_alias: KeyAlias


class Target(_Model):
    """How Apigee connects to the Cloud Run service."""

    connect_timeout_ms: int = Field(default=3000, ge=100, le=60_000)
    read_timeout_ms: int = Field(default=55_000, ge=100, le=300_000)
    # None: the runtime's default trust (public CAs, which sign *.run.app)
    trust_store: StoreRef | None = None
    mtls: Mtls | None = None


class JsonLimits(_Model):
    container_depth: int = Field(default=10, ge=1, le=1000)
    array_element_count: int = Field(default=1000, ge=1, le=1_000_000)
    object_entry_count: int = Field(default=200, ge=1, le=1_000_000)
    object_entry_name_length: int = Field(default=100, ge=1, le=10_000)
    string_value_length: int = Field(default=100_000, ge=1, le=10_000_000)


class XmlLimits(_Model):
    node_depth: int = Field(default=10, ge=1, le=1000)
    attribute_count_per_element: int = Field(default=20, ge=1, le=10_000)
    child_count: int = Field(default=1000, ge=1, le=1_000_000)
    element_name_length: int = Field(default=100, ge=1, le=10_000)
    attribute_value_length: int = Field(default=1000, ge=1, le=1_000_000)
    text_length: int = Field(default=100_000, ge=1, le=10_000_000)


class RegexRules(_Model):
    """RegularExpressionProtection: requests matching any pattern are rejected."""

    uri_path: tuple[RegexPattern, ...] = ()
    query_params: Mapping[QueryParamName, tuple[RegexPattern, ...]] = Field(default_factory=dict)
    headers: Mapping[HeaderName, tuple[RegexPattern, ...]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _not_empty(self) -> RegexRules:
        if not self.uri_path and not any(self.query_params.values()) and not any(self.headers.values()):
            raise ValueError("regex needs at least one pattern")
        return self


class ThreatProtection(_Model):
    """Payload limits for traffic from automated agents; each part is optional."""

    json_payload: JsonLimits | None = None
    xml_payload: XmlLimits | None = None
    regex: RegexRules | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> ThreatProtection:
        if self.json_payload is None and self.xml_payload is None and self.regex is None:
            raise ValueError("threat_protection needs json_payload, xml_payload or regex")
        return self


class Profile(_Model):
    """One named way of exposing a service. ``name`` is the key in the profiles file."""

    name: str
    description: str = Field(default="", max_length=500)
    auth: Auth
    spike_arrest: SpikeArrest | None = None
    quota: Quota | None = None
    cors: Cors | None = None
    headers: HeaderRules = HeaderRules()
    target: Target = Target()
    threat_protection: ThreatProtection | None = None
    # an OASValidation policy checks each request against the service's OpenAPI spec (3.0 only);
    # every service of the profile must then declare one (gatehouse.dev/openapi)
    validate_requests: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> Profile:
        if self.quota is not None:
            if self.quota.from_product and self.auth.mode != "apikey":
                raise ValueError(
                    "quota.from_product needs auth mode apikey (the API product comes with the key)"
                )
            if self.quota.per == "client" and self.auth.mode == "none":
                raise ValueError("quota.per 'client' needs an authenticated caller; use per: proxy")
        return self

    @property
    def public(self) -> bool:
        return self.auth.mode == "none"


class ProfileSet(_Model):
    """All profiles of one installation plus the one used when a service names none."""

    version: Literal[1] = 1
    default: str
    profiles: Mapping[str, Profile]

    @model_validator(mode="before")
    @classmethod
    def _names_from_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not isinstance(data.get("profiles"), dict):
            return data
        named: dict[Any, Any] = {}
        for key, body in data["profiles"].items():
            if not isinstance(key, str) or PROFILE_NAME.fullmatch(key) is None:
                raise ValueError(
                    f"profile name {quote_value(str(key))} must be 1-63 lowercase letters, digits, "
                    "'-' or '_', starting with a letter (it is used as a label value)"
                )
            if isinstance(body, dict) and "name" in body:
                raise ValueError(f"profiles.{key}: 'name' is taken from the key; remove it")
            named[key] = {"name": key, **body} if isinstance(body, dict) else body
        return {**data, "profiles": named}

    @model_validator(mode="after")
    def _default_exists(self) -> ProfileSet:
        if not self.profiles:
            raise ValueError("at least one profile is required")
        if self.default not in self.profiles:
            raise ValueError(f"default profile {self.default!r} is not defined")
        if self.profiles[self.default].public:
            raise ValueError(
                f"default profile {self.default!r} must authenticate callers (auth mode is 'none')"
            )
        return self

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self.profiles))

    def get(self, name: str) -> Profile:
        """The named profile; InputError naming the known ones if there is none."""
        profile = self.profiles.get(name)
        if profile is None:
            raise InputError(f"unknown profile {quote_value(name)} (known: {', '.join(self.names)})")
        return profile


# --------------------------------------------------------------------------------------------------
# Loading


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (PyYAML silently keeps the last one)."""

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[Hashable] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, Hashable) and key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"duplicate key {key!r}",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_profiles_text(path: Path | None = None) -> tuple[str, str]:
    """A profiles file's text and the name errors give it; ``None``: the file shipped with gatehouse."""
    if path is None:
        text = resources.files("gatehouse").joinpath("profiles.yaml").read_text(encoding="utf-8")
        return text, "profiles.yaml (built in)"
    try:
        return path.read_text(encoding="utf-8"), str(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read profiles file {path}: {exc}") from None


def load_profiles(path: Path | None = None) -> ProfileSet:
    """Load and validate a profiles file; ``None`` loads the file shipped with gatehouse."""
    text, source = read_profiles_text(path)
    return parse_profiles(text, source=source)


def parse_profiles(text: str, *, source: str = "<profiles>") -> ProfileSet:
    """Validate profiles YAML text; InputError lists every problem as ``source:line: key.path: problem``."""
    loader = _StrictLoader(text)
    try:
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark is not None else 0
        raise InputError(f"{source}:{line}: invalid YAML: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{source}: invalid YAML: {exc}") from None
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        raise InputError(f"{source}:1: the profiles file must be a mapping with 'default' and 'profiles'")
    try:
        return ProfileSet.model_validate(data)
    except ValidationError as exc:
        problems = [_describe(error, root, source) for error in exc.errors()]
        raise InputError(f"invalid profiles file: {'; '.join(problems)}") from None


def _describe(error: Mapping[str, Any], root: Node | None, source: str) -> str:
    line, path = _locate(root, tuple(error["loc"]))
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "union_tag_invalid":
        message = (
            f"unknown auth mode {error['input'].get('mode')!r} (expected one of {', '.join(AUTH_MODES)})"
        )
    elif error["type"] == "union_tag_not_found":
        message = f"auth needs a mode (one of {', '.join(AUTH_MODES)})"
    elif error["type"] == "extra_forbidden":
        message = "unknown key"
    return f"{source}:{line}: {'.'.join(path) or '(top level)'}: {message}"


def _locate(root: Node | None, loc: tuple[Any, ...]) -> tuple[int, list[str]]:
    """Follow a pydantic error location through the YAML nodes: (line of deepest node, key path)."""
    node = root
    line = node.start_mark.line + 1 if node is not None else 1
    path: list[str] = []
    for part in loc:
        child: Node | None = None
        if isinstance(node, MappingNode):
            for key_node, value_node in node.value:
                if isinstance(key_node, ScalarNode) and key_node.value == str(part):
                    child = key_node if isinstance(value_node, ScalarNode) else value_node
                    line = key_node.start_mark.line + 1
                    break
            if child is None and _is_union_tag(node, part):
                continue  # pydantic adds the auth mode to the location; it is not a key
        elif isinstance(node, SequenceNode) and isinstance(part, int) and part < len(node.value):
            child = node.value[part]
            line = child.start_mark.line + 1
        path.append(str(part))
        node = child
    return line, path


def _is_union_tag(node: MappingNode, part: object) -> bool:
    return any(
        isinstance(key, ScalarNode)
        and key.value == "mode"
        and isinstance(value, ScalarNode)
        and value.value == part
        for key, value in node.value
    )
