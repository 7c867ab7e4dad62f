"""Render a :class:`~gatehouse.exposure.ProxySpec` and its profile into an Apigee proxy bundle.

The bundle's content hash is how registration decides whether Apigee needs a new revision (Apigee
keeps at most 250 and returns no content hash of its own), so rendering is strictly deterministic: the
same spec and profile give the same bytes on any machine and any day. Nothing volatile (revision,
generation, timestamps, etags) is read, zip entries are sorted with fixed timestamps and modes,
and entries are *stored*, not deflated, because deflate output may differ between zlib builds.

XML is built with ElementTree, never by string templating: every value lands in element text or
an attribute value, where the serializer escapes it. Values coming from labels and annotations
were already held to strict grammars by :mod:`gatehouse.exposure`; as a last line of defence the
serializer refuses any character XML 1.0 cannot carry, so no input can change the structure.

Layout of the proxy (order of the ProxyEndpoint PreFlow request steps):
CORS (answers preflights before anything else) -> payload threat protection -> authentication ->
SpikeArrest -> Quota -> OASValidation (profiles with ``validate_requests``) -> request header rules.
The service's OpenAPI spec, when it declares one, is in ``apiproxy/resources/oas/`` (where API hub
and OASValidation look for it), byte for byte as read. The TargetEndpoint calls the service URL with a
Google ID token whose audience is that same URL (Cloud Run rejects path-bearing audiences).

Every bundle marks itself in the base configuration's ``<Description>``, which Apigee returns as
the revision's ``description`` (``organizations.apis.revisions.get``): :func:`bundle_marker` holds
the content hash (SHA-256 of the bundle rendered without that marker) and :func:`owner_marker`
names the installation. A revision whose import answer was lost, or which was never labelled, is
thereby recognisable as this installation's and as holding exactly this content.

No catch-all RaiseFault for unknown paths and no DefaultFaultRule: the proxy is a pass-through,
so every path belongs to the service, and Apigee's own fault responses are already JSON.

Pure module: standard library, pydantic, PyYAML and gatehouse.errors only.
"""

from __future__ import annotations

import hashlib
import io
import re
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from gatehouse.errors import InputError
from gatehouse.exposure import ProxySpec
from gatehouse.profiles import AnyAuth, ApiKeyAuth, Cors, JwtAuth, OAuth2Auth, Profile, ThreatProtection
from gatehouse.registration.openapi import ANNOTATION as OPENAPI_ANNOTATION
from gatehouse.registration.openapi import OpenApiSpec, SpecIdentity

# policy names: the prefixes follow apigeelint's naming convention (PO007)
CORS_POLICY = "CORS-Allow"
JSON_THREAT_POLICY = "JTP-JsonLimits"
XML_THREAT_POLICY = "XTP-XmlLimits"
REGEX_THREAT_POLICY = "RE-Patterns"
API_KEY_POLICY = "VA-VerifyKey"
JWT_POLICY = "JWT-VerifyToken"
OAUTH_POLICY = "OA-VerifyToken"
SPIKE_ARREST_POLICY = "SA-SpikeArrest"
QUOTA_POLICY = "Q-Quota"
REQUEST_HEADERS_POLICY = "AM-RequestHeaders"
RESPONSE_HEADERS_POLICY = "AM-ResponseHeaders"
OAS_POLICY = "OAS-ValidateRequest"
OAS_DIR = "apiproxy/resources/oas/"

# inbound credentials removed before the target on every profile (plus the profile's own key
# header or parameter): the usual API-key and bearer carriers
CREDENTIAL_HEADERS = ("Authorization", "x-api-key")
CREDENTIAL_QUERY_PARAMS = ("apikey", "api_key", "access_token")

DEFAULT_OWNER_ID = "gatehouse"
# bumped whenever the same spec and profile render to different bytes: part of the fleet
# configuration id, so such an upgrade goes out as a health-gated rollout (gatehouse.rollouts)
RENDER_VERSION = "1"
_OWNER_ID = re.compile(r"[a-z][a-z0-9_-]{0,39}", re.ASCII)  # as validated by Settings.owner_id
_XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
_ZIP_TIMESTAMP = (1980, 1, 1, 0, 0, 0)
_ZIP_FILE_MODE = 0o100644 << 16  # regular file, rw-r--r--
# characters XML 1.0 can carry; anything else would make the document unparseable
_XML_UNSAFE = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_JSON_TYPES = "(?i)application/([a-z0-9.-]+[+])?json( *;.*)?"
_XML_TYPES = "(?i)(application|text)/([a-z0-9.-]+[+])?xml( *;.*)?"
# threat protection runs only on a body of its content type (apigeelint ST006/ST007)
_JSON_CONTENT = f'request.content != null and request.header.Content-Type ~~ "{_JSON_TYPES}"'
_XML_CONTENT = f'request.content != null and request.header.Content-Type ~~ "{_XML_TYPES}"'


@dataclass(frozen=True)
class Bundle:
    """A rendered proxy: its files (``apiproxy/...`` -> bytes), the zip to import, the zip's hash,
    and the content hash its description carries (see :func:`bundle_marker`)."""

    files: Mapping[str, bytes]
    zip_bytes: bytes
    sha256: str
    content_hash: str = ""


@dataclass(frozen=True)
class Markers:
    """What a revision's description says about who generated it and from what content."""

    owner: str | None = None
    content_hash: str | None = None


@dataclass(frozen=True)
class _Step:
    policy: ET.Element
    condition: str | None = None

    @property
    def name(self) -> str:
        return self.policy.attrib["name"]


def render(
    spec: ProxySpec,
    profile: Profile,
    *,
    owner_id: str = DEFAULT_OWNER_ID,
    openapi: OpenApiSpec | SpecIdentity | None = None,
) -> Bundle:
    """Build the bundle for one service. Deterministic: equal inputs give byte-identical output.

    ``owner_id`` (the installation's, see Settings) is written into the description as
    :func:`owner_marker`, and the content hash as :func:`bundle_marker`, so a revision imported by
    a run that died (or lost the answer) before labelling it is still recognisable as ours.

    ``openapi`` is the service's validated spec. The content hash covers the spec through its
    digest, so the hash of a proxy whose spec is known only by its :class:`SpecIdentity` (what a
    proxy label keeps) can be computed without reading the spec again: such a bundle has the hash
    but no ``zip_bytes`` (b""), and nothing may import it.
    """
    if spec.profile != profile.name:
        raise InputError(f"spec asks for profile {spec.profile!r} but profile {profile.name!r} was given")
    if _OWNER_ID.fullmatch(owner_id) is None:
        raise InputError(f"invalid owner id {owner_id!r}")
    request = [
        *_cors_steps(spec, profile),
        *_threat_steps(profile.threat_protection),
        *_auth_steps(spec, profile.auth),
        *_spike_arrest_steps(spec, profile),
        *_quota_steps(spec, profile),
        *_oas_steps(spec, profile, openapi),
        *_request_header_steps(profile),
    ]
    response = _header_steps(
        RESPONSE_HEADERS_POLICY, profile.headers.response.set, profile.headers.response.remove
    )
    base = f"apiproxy/{spec.proxy_name}.xml"
    files = {
        base: _serialize(_base_config(spec, owner_id, None)),
        "apiproxy/proxies/default.xml": _serialize(_proxy_endpoint(spec.base_path, request, response)),
        "apiproxy/targets/default.xml": _serialize(_target_endpoint(spec, profile)),
    }
    for step in (*request, *response):
        files[f"apiproxy/policies/{step.name}.xml"] = _serialize(step.policy)
    # the content hash covers everything but itself: the bundle as it would be without the marker,
    # with the spec standing in as its digest
    hashed = dict(files)
    if openapi is not None:
        hashed[OAS_DIR + openapi.filename] = f"sha256:{openapi.digest}".encode()
    content_hash = hashlib.sha256(_zip(dict(sorted(hashed.items())))).hexdigest()
    files[base] = _serialize(_base_config(spec, owner_id, content_hash))
    if isinstance(openapi, OpenApiSpec):
        files[OAS_DIR + openapi.filename] = openapi.content
    ordered = dict(sorted(files.items()))
    zip_bytes = b"" if isinstance(openapi, SpecIdentity) else _zip(ordered)
    return Bundle(
        files=MappingProxyType(ordered),
        zip_bytes=zip_bytes,
        sha256=hashlib.sha256(zip_bytes).hexdigest(),
        content_hash=content_hash,
    )


def write_tree(bundle: Bundle, out_dir: Path) -> None:
    """Write the bundle's files under ``out_dir`` (giving ``out_dir/apiproxy/...``)."""
    root = out_dir.resolve()
    for relative, content in bundle.files.items():
        target = (root / relative).resolve()
        if not target.is_relative_to(root):
            raise InputError(f"bundle path {relative!r} escapes {out_dir}")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)


def owner_marker(owner_id: str) -> str:
    """The text in every bundle's description that names the gatehouse installation owning it."""
    return f"[gatehouse owner: {owner_id}]"


def bundle_marker(content_hash: str) -> str:
    """The text in every bundle's description that carries its content hash."""
    return f"[gatehouse bundle: {content_hash}]"


_MARKER = re.compile(r"\[gatehouse (owner|bundle): ([a-z0-9_-]+)\]", re.ASCII)


def read_markers(description: str) -> Markers:
    """The owner and content hash a revision's description carries (the last of each kind)."""
    found = dict(_MARKER.findall(description or ""))
    return Markers(owner=found.get("owner"), content_hash=found.get("bundle"))


# --------------------------------------------------------------------------------------------------
# Endpoints


def _base_config(spec: ProxySpec, owner_id: str, content_hash: str | None) -> ET.Element:
    root = ET.Element("APIProxy", name=spec.proxy_name)
    content = f"{bundle_marker(content_hash)} " if content_hash else ""
    _sub(
        root,
        "Description",
        f"Generated by gatehouse from Cloud Run service {spec.service_resource_name} "
        f"(profile {spec.profile}). Manual changes are overwritten. {content}{owner_marker(owner_id)}",
    )
    return root


def _proxy_endpoint(base_path: str, request: Sequence[_Step], response: Sequence[_Step]) -> ET.Element:
    root = ET.Element("ProxyEndpoint", name="default")
    preflow = ET.SubElement(root, "PreFlow", name="PreFlow")
    _steps(ET.SubElement(preflow, "Request"), request)
    _steps(ET.SubElement(preflow, "Response"), response)
    ET.SubElement(root, "Flows")
    postflow = ET.SubElement(root, "PostFlow", name="PostFlow")
    ET.SubElement(postflow, "Request")
    ET.SubElement(postflow, "Response")
    connection = ET.SubElement(root, "HTTPProxyConnection")
    _sub(connection, "BasePath", base_path)
    route = ET.SubElement(root, "RouteRule", name="default")
    _sub(route, "TargetEndpoint", "default")
    return root


def _steps(parent: ET.Element, steps: Sequence[_Step]) -> None:
    for step in steps:
        element = ET.SubElement(parent, "Step")
        _sub(element, "Name", step.name)
        if step.condition is not None:
            _sub(element, "Condition", step.condition)


def _target_endpoint(spec: ProxySpec, profile: Profile) -> ET.Element:
    target = profile.target
    root = ET.Element("TargetEndpoint", name="default")
    preflow = ET.SubElement(root, "PreFlow", name="PreFlow")
    ET.SubElement(preflow, "Request")
    ET.SubElement(preflow, "Response")
    ET.SubElement(root, "Flows")
    postflow = ET.SubElement(root, "PostFlow", name="PostFlow")
    ET.SubElement(postflow, "Request")
    ET.SubElement(postflow, "Response")
    connection = ET.SubElement(root, "HTTPTargetConnection")
    properties = ET.SubElement(connection, "Properties")
    _sub(properties, "Property", str(target.connect_timeout_ms), name="connect.timeout.millis")
    read_timeout = spec.target_timeout_ms or target.read_timeout_ms
    _sub(properties, "Property", str(read_timeout), name="io.timeout.millis")
    # a literal audience: never useTargetUrl (adds the request path), never a {variable}
    id_token = ET.SubElement(ET.SubElement(connection, "Authentication"), "GoogleIDToken")
    _sub(id_token, "Audience", spec.audience)
    # strict certificate and host name checks; the default trust covers *.run.app
    ssl = ET.SubElement(connection, "SSLInfo")
    _sub(ssl, "Enabled", "true")
    _sub(ssl, "Enforce", "true")
    if target.mtls is not None:
        _sub(ssl, "ClientAuthEnabled", "true")
        _sub(ssl, "KeyStore", target.mtls.key_store)
        _sub(ssl, "KeyAlias", target.mtls.key_alias)
    if target.trust_store is not None:
        _sub(ssl, "TrustStore", target.trust_store)
    _sub(connection, "URL", spec.target_url)
    return root


# --------------------------------------------------------------------------------------------------
# Policies, in PreFlow order


def _policy(kind: str, name: str) -> ET.Element:
    root = ET.Element(kind, continueOnError="false", enabled="true", name=name)
    _sub(root, "DisplayName", name)
    return root


def _cors_steps(spec: ProxySpec, profile: Profile) -> list[_Step]:
    settings = profile.cors or Cors()
    origins = spec.cors_origins if spec.cors_origins is not None else settings.allow_origins
    if not origins:
        return []
    allow_headers = list(settings.allow_headers)
    credential = _credential_header(profile.auth)
    if (
        credential is not None
        and "*" not in allow_headers
        and credential.lower() not in map(str.lower, allow_headers)
    ):
        allow_headers.append(credential.lower())  # browsers must be allowed to send the credential
    policy = _policy("CORS", CORS_POLICY)
    _sub(policy, "AllowOrigins", ", ".join(origins))
    _sub(policy, "AllowMethods", ", ".join(settings.allow_methods))
    _sub(policy, "AllowHeaders", ", ".join(allow_headers))
    _sub(policy, "ExposeHeaders", ", ".join(settings.expose_headers))
    _sub(policy, "MaxAge", str(settings.max_age_seconds))
    _sub(policy, "AllowCredentials", "true" if settings.allow_credentials else "false")
    _sub(policy, "GeneratePreflightResponse", "true")
    return [_Step(policy)]


def _threat_steps(protection: ThreatProtection | None) -> list[_Step]:
    if protection is None:
        return []
    steps: list[_Step] = []
    if protection.json_payload is not None:
        limits = protection.json_payload
        policy = _policy("JSONThreatProtection", JSON_THREAT_POLICY)
        _sub(policy, "Source", "request")
        _sub(policy, "ContainerDepth", str(limits.container_depth))
        _sub(policy, "ArrayElementCount", str(limits.array_element_count))
        _sub(policy, "ObjectEntryCount", str(limits.object_entry_count))
        _sub(policy, "ObjectEntryNameLength", str(limits.object_entry_name_length))
        _sub(policy, "StringValueLength", str(limits.string_value_length))
        steps.append(_Step(policy, _JSON_CONTENT))
    if protection.xml_payload is not None:
        xml_limits = protection.xml_payload
        policy = _policy("XMLThreatProtection", XML_THREAT_POLICY)
        _sub(policy, "Source", "request")
        names = ET.SubElement(policy, "NameLimits")
        _sub(names, "Element", str(xml_limits.element_name_length))
        structure = ET.SubElement(policy, "StructureLimits")
        _sub(structure, "NodeDepth", str(xml_limits.node_depth))
        _sub(structure, "AttributeCountPerElement", str(xml_limits.attribute_count_per_element))
        _sub(structure, "ChildCount", str(xml_limits.child_count))
        values = ET.SubElement(policy, "ValueLimits")
        _sub(values, "Text", str(xml_limits.text_length))
        _sub(values, "Attribute", str(xml_limits.attribute_value_length))
        steps.append(_Step(policy, _XML_CONTENT))
    if protection.regex is not None:
        rules = protection.regex
        policy = _policy("RegularExpressionProtection", REGEX_THREAT_POLICY)
        _sub(policy, "Source", "request")
        _sub(policy, "IgnoreUnresolvedVariables", "true")  # absent headers/params are not a threat
        if rules.uri_path:
            uri_path = ET.SubElement(policy, "URIPath")
            for pattern in rules.uri_path:
                _sub(uri_path, "Pattern", pattern)
        for element, named in (("QueryParam", rules.query_params), ("Header", rules.headers)):
            for name in sorted(named):
                if named[name]:
                    holder = ET.SubElement(policy, element, name=name)
                    for pattern in named[name]:
                        _sub(holder, "Pattern", pattern)
        steps.append(_Step(policy))
    return steps


def _auth_steps(spec: ProxySpec, auth: AnyAuth) -> list[_Step]:
    if isinstance(auth, ApiKeyAuth):
        policy = _policy("VerifyAPIKey", API_KEY_POLICY)
        source = (
            f"request.header.{auth.key_header}"
            if auth.key_header
            else f"request.queryparam.{auth.query_param}"
        )
        ET.SubElement(policy, "APIKey", ref=source)
        return [_Step(policy)]
    if isinstance(auth, OAuth2Auth):
        policy = _policy("OAuthV2", OAUTH_POLICY)
        _sub(policy, "Operation", "VerifyAccessToken")
        if auth.scopes:
            _sub(policy, "Scope", " ".join(auth.scopes))
        return [_Step(policy)]
    if isinstance(auth, JwtAuth):
        return [_jwt_step(spec, auth)]
    return []  # auth mode none


def _jwt_step(spec: ProxySpec, auth: JwtAuth) -> _Step:
    audience = spec.jwt_audience or auth.audience
    if audience is None:
        raise InputError(
            f"profile {spec.profile!r} verifies JWTs but neither it nor the service names an audience"
        )
    policy = _policy("VerifyJWT", JWT_POLICY)
    _sub(policy, "Algorithm", auth.algorithm)
    ET.SubElement(ET.SubElement(policy, "PublicKey"), "JWKS", uri=auth.jwks_uri)
    _sub(policy, "Issuer", auth.issuer)
    _sub(policy, "Audience", audience)
    _sub(policy, "TimeAllowance", f"{auth.time_allowance_seconds}s")
    return _Step(policy)


def _spike_arrest_steps(spec: ProxySpec, profile: Profile) -> list[_Step]:
    rate = spec.rate_limit or (profile.spike_arrest.rate if profile.spike_arrest else None)
    if rate is None:
        return []
    policy = _policy("SpikeArrest", SPIKE_ARREST_POLICY)
    _sub(policy, "Rate", rate)
    _sub(policy, "UseEffectiveCount", "true")  # count across all message processors
    return [_Step(policy)]


def _quota_steps(spec: ProxySpec, profile: Profile) -> list[_Step]:
    base = profile.quota
    limits = spec.quota if spec.quota is not None else base
    if limits is None:
        return []
    allow, interval, time_unit = limits.allow, limits.interval, limits.time_unit
    from_product = base.from_product if base is not None else False
    per = base.per if base is not None else ("proxy" if profile.public else "client")
    product = f"verifyapikey.{API_KEY_POLICY}.apiproduct.developer.quota"
    policy = _policy("Quota", QUOTA_POLICY)
    if from_product:  # the API product's quota wins; the literals apply when it sets none
        ET.SubElement(policy, "Allow", count=str(allow), countRef=f"{product}.limit")
        _sub(policy, "Interval", str(interval), ref=f"{product}.interval")
        _sub(policy, "TimeUnit", time_unit, ref=f"{product}.timeunit")
    else:
        ET.SubElement(policy, "Allow", count=str(allow))
        _sub(policy, "Interval", str(interval))
        _sub(policy, "TimeUnit", time_unit)
    if per == "client":
        ET.SubElement(policy, "Identifier", ref=_client_identifier(profile.auth))
    _sub(policy, "Distributed", "true")  # one count across message processors
    return [_Step(policy)]


def _oas_steps(spec: ProxySpec, profile: Profile, openapi: OpenApiSpec | SpecIdentity | None) -> list[_Step]:
    if not profile.validate_requests:
        return []
    if openapi is None:
        raise InputError(
            f"profile {profile.name!r} validates requests against the service's OpenAPI spec; "
            f"set the annotation {OPENAPI_ANNOTATION}"
        )
    if isinstance(openapi, OpenApiSpec) and openapi.minor != "3.0":
        raise InputError(
            f"annotation {OPENAPI_ANNOTATION}: the spec is OpenAPI {openapi.version} and profile "
            f"{profile.name!r} validates requests, which Apigee's OASValidation supports for OpenAPI 3.0 only"
        )
    policy = _policy("OASValidation", OAS_POLICY)
    _sub(policy, "OASResource", f"oas://{openapi.filename}")
    _sub(policy, "Source", "request")
    return [_Step(policy)]


def _client_identifier(auth: AnyAuth) -> str:
    if isinstance(auth, JwtAuth):
        return f"jwt.{JWT_POLICY}.decoded.claim.sub"
    return "client_id"  # set by VerifyAPIKey and by OAuthV2 VerifyAccessToken


def _request_header_steps(profile: Profile) -> list[_Step]:
    """The profile's request header rules plus stripping inbound credentials before the target.

    Every profile, public included, removes :data:`CREDENTIAL_HEADERS` and
    :data:`CREDENTIAL_QUERY_PARAMS` and the profile's own API-key header or parameter: a caller's
    credential is for Apigee only. A public proxy verifies nothing, but its callers may still send
    the key or token they use elsewhere on the same host (a public sub-path under an API-key path
    receives exactly those requests), and its backend must never see them. For jwt/oauth2 the
    target connection replaces Authorization with the Google ID token anyway; removing it here
    keeps that true even if the token is ever sent in another header. A header the profile sets
    itself is left to that rule.
    """
    auth = profile.auth
    to_set = {name.lower() for name in profile.headers.request.set}
    headers: list[str] = []
    for header in (*profile.headers.request.remove, _credential_header(auth), *CREDENTIAL_HEADERS):
        if header is not None and header.lower() not in to_set | {h.lower() for h in headers}:
            headers.append(header)
    params: list[str] = []
    own_param = auth.query_param if isinstance(auth, ApiKeyAuth) else None
    for param in (own_param, *CREDENTIAL_QUERY_PARAMS):
        if param is not None and param not in params:
            params.append(param)
    return _header_steps(REQUEST_HEADERS_POLICY, profile.headers.request.set, headers, params)


def _credential_header(auth: AnyAuth) -> str | None:
    if isinstance(auth, ApiKeyAuth):
        return auth.key_header
    if isinstance(auth, JwtAuth | OAuth2Auth):
        return "Authorization"
    return None


def _header_steps(
    name: str, to_set: Mapping[str, str], headers: Sequence[str], params: Sequence[str] = ()
) -> list[_Step]:
    if not to_set and not headers and not params:
        return []
    policy = _policy("AssignMessage", name)
    if headers or params:
        remove = ET.SubElement(policy, "Remove")
        if headers:
            holder = ET.SubElement(remove, "Headers")
            for header in headers:
                ET.SubElement(holder, "Header", name=header)
        if params:
            holder = ET.SubElement(remove, "QueryParams")
            for param in params:
                ET.SubElement(holder, "QueryParam", name=param)
    if to_set:
        holder = ET.SubElement(ET.SubElement(policy, "Set"), "Headers")
        for header in sorted(to_set):
            _sub(holder, "Header", to_set[header], name=header)
    _sub(policy, "IgnoreUnresolvedVariables", "true")  # an unresolved template sets an empty value
    return [_Step(policy)]


# --------------------------------------------------------------------------------------------------
# Serialization


def _sub(parent: ET.Element, tag: str, text: str, **attrib: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attrib)
    element.text = text
    return element


def _serialize(root: ET.Element) -> bytes:
    for element in root.iter():
        for value in (element.text or "", *element.attrib.values()):
            bad = _XML_UNSAFE.search(value)
            if bad is not None:
                raise InputError(f"<{element.tag}> value contains a character XML cannot carry: {bad[0]!r}")
    ET.indent(root, space="  ")
    return (_XML_DECLARATION + ET.tostring(root, encoding="unicode") + "\n").encode("utf-8")


def _zip(files: Mapping[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for path in sorted(files):
            info = zipfile.ZipInfo(path, date_time=_ZIP_TIMESTAMP)
            info.compress_type = zipfile.ZIP_STORED
            info.external_attr = _ZIP_FILE_MODE
            info.create_system = 3  # Unix, whatever the host
            archive.writestr(info, files[path])
    return buffer.getvalue()
