"""Bundle rendering: structure of the XML, references between files, determinism of the zip."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import io
import json
import re
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path
from typing import Any

import pytest

from gatehouse.bundle import Bundle, Markers, bundle_marker, owner_marker, read_markers, render, write_tree
from gatehouse.errors import InputError
from gatehouse.exposure import ProxySpec, RunService, desired
from gatehouse.profiles import ProfileSet, load_profiles, parse_profiles

FIXTURES = Path(__file__).parent / "fixtures" / "services"
PROFILES = load_profiles()
POLICY_NAME = re.compile(r"[A-Za-z0-9 _.-]{1,255}")

# a profile with every option on
EVERYTHING = parse_profiles(
    r"""
default: full
profiles:
  full:
    auth: {mode: apikey, query_param: apikey}
    spike_arrest: {rate: 30ps}
    quota: {allow: 500, interval: 5, time_unit: minute, from_product: true}
    cors:
      allow_origins: [https://app.example.com]
      allow_methods: [GET, POST]
      expose_headers: [x-request-id]
      max_age_seconds: 600
      allow_credentials: true
    headers:
      request:
        set: {x-gatehouse-client-id: "{client_id}"}
        remove: [cookie]
      response:
        set: {strict-transport-security: max-age=31536000}
        remove: [server]
    target:
      connect_timeout_ms: 2000
      read_timeout_ms: 30000
      trust_store: ref://gatehouse-truststore
      mtls: {key_store: ref://gatehouse-client-keystore, key_alias: gatehouse-client}
    threat_protection:
      json_payload: {container_depth: 5}
      xml_payload: {node_depth: 5}
      regex:
        uri_path: ['(?i)(drop\s+table|<\s*script)']
        query_params: {q: ['<\s*script']}
        headers: {user-agent: ['(?i)sqlmap']}
"""
)


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


def spec_for(doc: dict[str, Any], profiles: ProfileSet = PROFILES) -> ProxySpec:
    result = desired(RunService.from_json(doc), profiles, default_environments=["test"])
    assert isinstance(result, ProxySpec)
    return result


def bundle_for(name: str, profiles: ProfileSet = PROFILES) -> tuple[ProxySpec, Bundle]:
    spec = spec_for(fixture(name), profiles)
    return spec, render(spec, profiles.profiles[spec.profile])


def xml_of(content: bytes) -> ET.Element:
    return ET.fromstring(content)


def parsed(bundle: Bundle, path: str) -> ET.Element:
    return xml_of(bundle.files[path])


def policy(bundle: Bundle, name: str) -> ET.Element:
    return parsed(bundle, f"apiproxy/policies/{name}.xml")


def request_steps(bundle: Bundle) -> list[str]:
    endpoint = parsed(bundle, "apiproxy/proxies/default.xml")
    return [name.text or "" for name in endpoint.findall("PreFlow/Request/Step/Name")]


FIXTURE_STEPS = [
    ("v2-apikey.json", ["VA-VerifyKey", "SA-SpikeArrest", "Q-Quota", "AM-RequestHeaders"]),
    ("v2-jwt.json", ["JWT-VerifyToken", "SA-SpikeArrest", "Q-Quota", "AM-RequestHeaders"]),
    ("v2-oauth2.json", ["OA-VerifyToken", "SA-SpikeArrest", "Q-Quota", "AM-RequestHeaders"]),
    (
        "v2-agent.json",
        ["JTP-JsonLimits", "XTP-XmlLimits", "VA-VerifyKey", "SA-SpikeArrest", "Q-Quota", "AM-RequestHeaders"],
    ),
    ("v2-public.json", ["SA-SpikeArrest", "Q-Quota", "AM-RequestHeaders"]),
    (
        "v2-every-annotation.json",
        ["CORS-Allow", "JWT-VerifyToken", "SA-SpikeArrest", "Q-Quota", "AM-RequestHeaders"],
    ),
]


@pytest.mark.parametrize(("fixture_name", "steps"), FIXTURE_STEPS)
def test_preflow_steps_in_order(fixture_name: str, steps: list[str]) -> None:
    _, bundle = bundle_for(fixture_name)
    assert request_steps(bundle) == steps


def test_everything_profile_step_order() -> None:
    spec = spec_for(fixture("v2-default-profile.json"), EVERYTHING)
    bundle = render(spec, EVERYTHING.profiles["full"])
    assert request_steps(bundle) == [
        "CORS-Allow",
        "JTP-JsonLimits",
        "XTP-XmlLimits",
        "RE-Patterns",
        "VA-VerifyKey",
        "SA-SpikeArrest",
        "Q-Quota",
        "AM-RequestHeaders",
    ]
    endpoint = parsed(bundle, "apiproxy/proxies/default.xml")
    assert [n.text for n in endpoint.findall("PreFlow/Response/Step/Name")] == ["AM-ResponseHeaders"]


@pytest.mark.parametrize("fixture_name", [name for name, _ in FIXTURE_STEPS])
def test_files_and_references_are_consistent(fixture_name: str) -> None:
    spec, bundle = bundle_for(fixture_name)
    policy_files = {
        path.removeprefix("apiproxy/policies/").removesuffix(".xml")
        for path in bundle.files
        if path.startswith("apiproxy/policies/")
    }
    assert set(bundle.files) == {
        f"apiproxy/{spec.proxy_name}.xml",
        "apiproxy/proxies/default.xml",
        "apiproxy/targets/default.xml",
        *(f"apiproxy/policies/{name}.xml" for name in policy_files),
    }
    endpoint = parsed(bundle, "apiproxy/proxies/default.xml")
    attached = [name.text for name in endpoint.iter("Name")]
    # every step names an existing policy file, and every policy file is attached exactly once
    assert sorted(attached) == sorted(policy_files)
    for name in policy_files:
        root = policy(bundle, name)
        assert POLICY_NAME.fullmatch(name)
        assert root.get("name") == name
        assert root.findtext("DisplayName") == name
        assert root.get("continueOnError") == "false"
        assert root.get("enabled") == "true"


@pytest.mark.parametrize("fixture_name", [name for name, _ in FIXTURE_STEPS])
def test_target_calls_the_service_with_an_id_token_for_its_url(fixture_name: str) -> None:
    spec, bundle = bundle_for(fixture_name)
    service_url = fixture(fixture_name)["uri"]
    target = parsed(bundle, "apiproxy/targets/default.xml")
    assert target.tag == "TargetEndpoint"
    assert target.get("name") == "default"
    connection = target.find("HTTPTargetConnection")
    assert connection is not None
    audience = connection.find("Authentication/GoogleIDToken/Audience")
    assert audience is not None
    assert audience.attrib == {}  # no useTargetUrl, no ref
    assert audience.text == connection.findtext("URL") == service_url == spec.target_url
    assert "{" not in (audience.text or "")
    assert connection.findtext("SSLInfo/Enabled") == "true"
    assert connection.findtext("SSLInfo/Enforce") == "true"
    properties = {p.get("name"): p.text for p in connection.findall("Properties/Property")}
    read_timeout = str(spec.target_timeout_ms or 55000)
    assert properties == {"connect.timeout.millis": "3000", "io.timeout.millis": read_timeout}


@pytest.mark.parametrize("fixture_name", [name for name, _ in FIXTURE_STEPS])
def test_proxy_endpoint_and_base_config(fixture_name: str) -> None:
    spec, bundle = bundle_for(fixture_name)
    endpoint = parsed(bundle, "apiproxy/proxies/default.xml")
    assert endpoint.tag == "ProxyEndpoint"
    assert endpoint.findtext("HTTPProxyConnection/BasePath") == spec.base_path
    route = endpoint.find("RouteRule")
    assert route is not None
    assert route.get("name") == "default"
    assert route.findtext("TargetEndpoint") == "default"
    for element in ("PreFlow", "Flows", "PostFlow"):
        assert endpoint.find(element) is not None
    base = parsed(bundle, f"apiproxy/{spec.proxy_name}.xml")
    assert base.tag == "APIProxy"
    assert base.get("name") == spec.proxy_name
    description = base.findtext("Description") or ""
    assert f"Generated by gatehouse from Cloud Run service {spec.service_resource_name}" in description
    assert f"(profile {spec.profile})" in description
    assert owner_marker("gatehouse") in description
    assert not re.search(r"\d{4}-\d{2}-\d{2}", description)  # no timestamps


def test_every_annotation_lands_in_the_policies() -> None:
    _, bundle = bundle_for("v2-every-annotation.json")
    assert (
        parsed(bundle, "apiproxy/proxies/default.xml").findtext("HTTPProxyConnection/BasePath")
        == "/v2/inventory"
    )
    assert policy(bundle, "SA-SpikeArrest").findtext("Rate") == "30ps"
    quota = policy(bundle, "Q-Quota")
    allow = quota.find("Allow")
    assert allow is not None
    assert allow.attrib == {"count": "5000"}
    assert quota.findtext("Interval") == "1"
    assert quota.findtext("TimeUnit") == "hour"
    identifier = quota.find("Identifier")
    assert identifier is not None
    assert identifier.get("ref") == "jwt.JWT-VerifyToken.decoded.claim.sub"
    assert quota.findtext("Distributed") == "true"
    target = parsed(bundle, "apiproxy/targets/default.xml")
    timeouts = {p.get("name"): p.text for p in target.findall("HTTPTargetConnection/Properties/Property")}
    assert timeouts["io.timeout.millis"] == "1500"
    jwt = policy(bundle, "JWT-VerifyToken")
    assert jwt.findtext("Audience") == "https://inventory.api.acme.example"
    assert jwt.findtext("Issuer") == "https://accounts.google.com"
    assert jwt.findtext("Algorithm") == "RS256"
    jwks = jwt.find("PublicKey/JWKS")
    assert jwks is not None
    assert jwks.get("uri") == "https://www.googleapis.com/oauth2/v3/certs"
    cors = policy(bundle, "CORS-Allow")
    assert cors.findtext("AllowOrigins") == "https://shop.acme.example, https://admin.acme.example:8443"
    assert "authorization" in (cors.findtext("AllowHeaders") or "").split(", ")
    assert cors.findtext("GeneratePreflightResponse") == "true"


def test_apikey_policies() -> None:
    _, bundle = bundle_for("v2-apikey.json")
    key = policy(bundle, "VA-VerifyKey").find("APIKey")
    assert key is not None
    assert key.get("ref") == "request.header.x-api-key"
    quota = policy(bundle, "Q-Quota")
    product = "verifyapikey.VA-VerifyKey.apiproduct.developer.quota"
    allow = quota.find("Allow")
    assert allow is not None
    assert allow.attrib == {"count": "10000", "countRef": f"{product}.limit"}
    interval = quota.find("Interval")
    assert interval is not None
    assert (interval.text, interval.get("ref")) == ("1", f"{product}.interval")
    identifier = quota.find("Identifier")
    assert identifier is not None
    assert identifier.get("ref") == "client_id"
    headers = policy(bundle, "AM-RequestHeaders")
    assert [h.get("name") for h in headers.findall("Remove/Headers/Header")] == ["x-api-key", "Authorization"]
    assert {h.get("name"): h.text for h in headers.findall("Set/Headers/Header")} == {
        "x-gatehouse-client-id": "{client_id}"
    }


@pytest.mark.parametrize("fixture_name", ["v2-jwt.json", "v2-oauth2.json"])
def test_bearer_profiles_strip_the_callers_authorization(fixture_name: str) -> None:
    _, bundle = bundle_for(fixture_name)
    headers = policy(bundle, "AM-RequestHeaders")
    assert [h.get("name") for h in headers.findall("Remove/Headers/Header")] == ["Authorization", "x-api-key"]


def test_oauth2_policy() -> None:
    _, bundle = bundle_for("v2-oauth2.json")
    assert policy(bundle, "OA-VerifyToken").findtext("Operation") == "VerifyAccessToken"


def test_public_profile_has_no_auth_and_a_proxy_wide_quota() -> None:
    _, bundle = bundle_for("v2-public.json")
    quota = policy(bundle, "Q-Quota")
    assert quota.find("Identifier") is None
    assert quota.findtext("TimeUnit") == "day"


def test_everything_profile_target_and_policies() -> None:
    spec = spec_for(fixture("v2-default-profile.json"), EVERYTHING)
    bundle = render(spec, EVERYTHING.profiles["full"])
    ssl = parsed(bundle, "apiproxy/targets/default.xml").find("HTTPTargetConnection/SSLInfo")
    assert ssl is not None
    assert {child.tag: child.text for child in ssl} == {
        "Enabled": "true",
        "Enforce": "true",
        "ClientAuthEnabled": "true",
        "KeyStore": "ref://gatehouse-client-keystore",
        "KeyAlias": "gatehouse-client",
        "TrustStore": "ref://gatehouse-truststore",
    }
    key = policy(bundle, "VA-VerifyKey").find("APIKey")
    assert key is not None
    assert key.get("ref") == "request.queryparam.apikey"
    request_headers = policy(bundle, "AM-RequestHeaders")
    assert [p.get("name") for p in request_headers.findall("Remove/QueryParams/QueryParam")] == [
        "apikey",
        "api_key",
        "access_token",
    ]
    assert [h.get("name") for h in request_headers.findall("Remove/Headers/Header")] == [
        "cookie",
        "Authorization",
        "x-api-key",
    ]
    response_headers = policy(bundle, "AM-ResponseHeaders")
    assert [h.get("name") for h in response_headers.findall("Remove/Headers/Header")] == ["server"]
    regex = policy(bundle, "RE-Patterns")
    assert regex.findtext("URIPath/Pattern") == r"(?i)(drop\s+table|<\s*script)"
    query = regex.find("QueryParam")
    assert query is not None
    assert query.get("name") == "q"
    assert policy(bundle, "JTP-JsonLimits").findtext("ContainerDepth") == "5"
    steps = parsed(bundle, "apiproxy/proxies/default.xml").findall("PreFlow/Request/Step")
    conditions = {step.findtext("Name"): step.findtext("Condition") for step in steps}
    assert "request.content != null" in (conditions["JTP-JsonLimits"] or "")
    assert "json" in (conditions["JTP-JsonLimits"] or "")
    assert "xml" in (conditions["XTP-XmlLimits"] or "")
    cors = policy(bundle, "CORS-Allow")
    assert cors.findtext("AllowCredentials") == "true"
    assert cors.findtext("AllowHeaders") == "origin, accept, content-type"  # key is a query param
    quota = policy(bundle, "Q-Quota")
    assert quota.findtext("Interval") == "5"


def test_quota_annotation_adds_a_quota_to_a_profile_without_one() -> None:
    profiles = parse_profiles("default: bare\nprofiles:\n  bare: {auth: {mode: oauth2}}\n")
    doc = fixture("v2-default-profile.json")
    spec = spec_for(doc, profiles)
    assert "Q-Quota" not in request_steps(render(spec, profiles.profiles["bare"]))
    doc["annotations"]["gatehouse.dev/quota"] = "50/minute"
    doc["annotations"]["gatehouse.dev/rate-limit"] = "10ps"
    bundle = render(spec_for(doc, profiles), profiles.profiles["bare"])
    assert request_steps(bundle) == ["OA-VerifyToken", "SA-SpikeArrest", "Q-Quota", "AM-RequestHeaders"]
    identifier = policy(bundle, "Q-Quota").find("Identifier")
    assert identifier is not None
    assert identifier.get("ref") == "client_id"


def test_owner_id_is_marked_in_the_description() -> None:
    spec, default = bundle_for("v2-apikey.json")
    team = render(spec, PROFILES.profiles["apikey"], owner_id="team-a")
    description = parsed(team, f"apiproxy/{spec.proxy_name}.xml").findtext("Description") or ""
    assert description.endswith(owner_marker("team-a"))
    assert owner_marker("team") not in description  # markers are delimited
    assert team.sha256 != default.sha256
    with pytest.raises(InputError, match="invalid owner id"):
        render(spec, PROFILES.profiles["apikey"], owner_id="Team A]")


def test_description_carries_the_content_hash() -> None:
    spec, bundle = bundle_for("v2-apikey.json")
    description = parsed(bundle, f"apiproxy/{spec.proxy_name}.xml").findtext("Description") or ""
    markers = read_markers(description)
    assert markers == Markers(owner="gatehouse", content_hash=bundle.content_hash)
    assert re.fullmatch(r"[0-9a-f]{64}", bundle.content_hash)
    assert bundle_marker(bundle.content_hash) in description
    # deterministic, and it changes with the content (and with the owner)
    assert render(spec, PROFILES.profiles["apikey"]).content_hash == bundle.content_hash
    other = render(spec, PROFILES.profiles["apikey"], owner_id="team-a")
    assert other.content_hash != bundle.content_hash
    assert read_markers("written by hand") == Markers()


def test_render_refuses_the_wrong_profile() -> None:
    spec, _ = bundle_for("v2-apikey.json")
    with pytest.raises(InputError, match="spec asks for profile 'apikey' but profile 'jwt' was given"):
        render(spec, PROFILES.profiles["jwt"])


def test_jwt_profile_without_any_audience_is_refused() -> None:
    spec, _ = bundle_for("v2-jwt.json")
    with pytest.raises(InputError, match="verifies JWTs but neither it nor the service names an audience"):
        render(dataclasses.replace(spec, jwt_audience=None), PROFILES.profiles["jwt"])


def test_characters_xml_cannot_carry_are_refused_even_past_validation() -> None:
    spec, _ = bundle_for("v2-apikey.json")
    with pytest.raises(InputError, match="<BasePath> value contains a character XML cannot carry"):
        render(dataclasses.replace(spec, base_path="/orders\x01"), PROFILES.profiles["apikey"])


def test_markup_that_slipped_past_validation_stays_text() -> None:
    spec, bundle = bundle_for("v2-apikey.json")
    hostile = '/orders"/><RouteRule name="evil"><TargetEndpoint>x</TargetEndpoint></RouteRule><x a="'
    evil = render(dataclasses.replace(spec, base_path=hostile), PROFILES.profiles["apikey"])
    endpoint = parsed(evil, "apiproxy/proxies/default.xml")
    assert endpoint.findtext("HTTPProxyConnection/BasePath") == hostile
    assert len(endpoint.findall("RouteRule")) == 1
    assert [e.tag for e in endpoint.iter()] == [
        e.tag for e in parsed(bundle, "apiproxy/proxies/default.xml").iter()
    ]


# --------------------------------------------------------------------------------------------------
# Determinism


def test_rendering_twice_gives_identical_bytes() -> None:
    _, first = bundle_for("v2-every-annotation.json")
    _, second = bundle_for("v2-every-annotation.json")
    assert first.zip_bytes == second.zip_bytes
    assert first.sha256 == second.sha256
    assert dict(first.files) == dict(second.files)


def _volatile_change(doc: dict[str, Any]) -> None:
    doc.update(
        generation="42",
        observedGeneration="42",
        etag='"CHANGED"',
        updateTime="2027-12-31T23:59:59.999999Z",
        uid="00000000-0000-0000-0000-000000000000",
    )
    doc["template"]["revision"] = "inventory-00042-new"
    doc["latestReadyRevision"] = doc["latestCreatedRevision"] = (
        "projects/x/locations/y/services/z/revisions/r-42"
    )
    doc["labels"]["cost-center"] = "cc-9999"
    doc["labels"]["deployed-by"] = "pipeline-1234"
    doc["annotations"]["run.googleapis.com/description"] = "changed"
    doc["terminalCondition"]["lastTransitionTime"] = "2027-12-31T23:59:59Z"


def test_volatile_fields_do_not_change_the_hash() -> None:
    doc = fixture("v2-every-annotation.json")
    changed = copy.deepcopy(doc)
    _volatile_change(changed)
    before = render(spec_for(doc), PROFILES.profiles["jwt"])
    after = render(spec_for(changed), PROFILES.profiles["jwt"])
    assert before.sha256 == after.sha256


CONTENT_CHANGES = [
    ("base path", lambda d: d["annotations"].update({"gatehouse.dev/base-path": "/v3/inventory"})),
    ("rate", lambda d: d["annotations"].update({"gatehouse.dev/rate-limit": "31ps"})),
    ("quota", lambda d: d["annotations"].update({"gatehouse.dev/quota": "5001/hour"})),
    ("timeout", lambda d: d["annotations"].update({"gatehouse.dev/target-timeout": "2s"})),
    ("audience", lambda d: d["annotations"].update({"gatehouse.dev/jwt-audience": "api://other"})),
    (
        "origins",
        lambda d: d["annotations"].update({"gatehouse.dev/cors-origins": "https://shop.acme.example"}),
    ),
    ("url", lambda d: d.update(uri="https://inventory-zzz-ew.a.run.app")),
    ("project", lambda d: d.update(name=d["name"].replace("acme-orders-prod", "acme-orders-stage"))),
]


@pytest.mark.parametrize(("case", "change"), CONTENT_CHANGES, ids=[case for case, _ in CONTENT_CHANGES])
def test_content_changes_change_the_hash(case: str, change: Any) -> None:
    doc = fixture("v2-every-annotation.json")
    changed = copy.deepcopy(doc)
    change(changed)
    assert (
        render(spec_for(doc), PROFILES.profiles["jwt"]).sha256
        != render(spec_for(changed), PROFILES.profiles["jwt"]).sha256
    )


def test_environments_are_deployment_not_content() -> None:
    doc = fixture("v2-every-annotation.json")
    changed = copy.deepcopy(doc)
    changed["annotations"]["gatehouse.dev/environments"] = "prod"
    assert (
        render(spec_for(doc), PROFILES.profiles["jwt"]).sha256
        == render(spec_for(changed), PROFILES.profiles["jwt"]).sha256
    )


def test_zip_is_canonical() -> None:
    _, bundle = bundle_for("v2-agent.json")
    with zipfile.ZipFile(io.BytesIO(bundle.zip_bytes)) as archive:
        infos = archive.infolist()
        assert [info.filename for info in infos] == sorted(bundle.files)
        for info in infos:
            assert info.date_time == (1980, 1, 1, 0, 0, 0)
            assert info.compress_type == zipfile.ZIP_STORED
            assert info.external_attr == 0o100644 << 16
            assert info.create_system == 3
            assert archive.read(info) == bundle.files[info.filename]
    assert all(name.startswith("apiproxy/") for name in bundle.files)
    assert bundle.sha256 == hashlib.sha256(bundle.zip_bytes).hexdigest()


def test_write_tree(tmp_path: Path) -> None:
    _, bundle = bundle_for("v2-apikey.json")
    write_tree(bundle, tmp_path)
    written = {str(p.relative_to(tmp_path)): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert written == dict(bundle.files)


def test_files_are_utf8_xml_with_a_declaration() -> None:
    _, bundle = bundle_for("v2-every-annotation.json")
    for content in bundle.files.values():
        assert content.startswith(b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n')
        xml_of(content)


# a key header of its own and a public profile that removes a header itself
CUSTOM_CREDENTIALS = parse_profiles(
    """
default: partner
profiles:
  partner:
    auth: {mode: apikey, header: x-partner-key}
  open:
    auth: {mode: none, i_understand_this_is_public: true}
    headers:
      request:
        remove: [cookie]
"""
)


def _credential_cases() -> list[tuple[str, ProfileSet, str, set[str], set[str]]]:
    """(case id, profiles, profile name, extra headers, extra query params) that must be stripped."""
    cases = [(name, PROFILES, name, set(), set()) for name in PROFILES.names]
    cases.append(("custom-key-header", CUSTOM_CREDENTIALS, "partner", {"x-partner-key"}, set()))
    cases.append(("public-with-own-rules", CUSTOM_CREDENTIALS, "open", {"cookie"}, set()))
    cases.append(("key-in-query", EVERYTHING, "full", {"cookie"}, {"apikey"}))
    return cases


@pytest.mark.parametrize(
    ("profiles", "profile_name", "extra_headers", "extra_params"),
    [case[1:] for case in _credential_cases()],
    ids=[case[0] for case in _credential_cases()],
)
def test_every_profile_strips_inbound_credentials_before_the_target(
    profiles: ProfileSet, profile_name: str, extra_headers: set[str], extra_params: set[str]
) -> None:
    doc = fixture("v2-default-profile.json")
    doc["labels"]["apigee-profile"] = profile_name
    if profile_name == "jwt":
        doc["annotations"]["gatehouse.dev/jwt-audience"] = "client-1.apps.googleusercontent.com"
    bundle = render(spec_for(doc, profiles), profiles.profiles[profile_name])
    # the stripping step runs on every request (no condition) in the ProxyEndpoint's request flow,
    # so nothing the caller authenticated with reaches the target
    endpoint = parsed(bundle, "apiproxy/proxies/default.xml")
    unconditional = [
        step.findtext("Name")
        for step in endpoint.findall("PreFlow/Request/Step")
        if step.find("Condition") is None
    ]
    removed_headers: set[str] = set()
    removed_params: set[str] = set()
    for name in unconditional:
        root = policy(bundle, name or "")
        if root.tag != "AssignMessage" or root.find("AssignTo") is not None:
            continue
        removed_headers |= {(h.get("name") or "").lower() for h in root.findall("Remove/Headers/Header")}
        removed_params |= {p.get("name") or "" for p in root.findall("Remove/QueryParams/QueryParam")}
        set_headers = {(h.get("name") or "").lower() for h in root.findall("Set/Headers/Header")}
        assert not set_headers & {"authorization", "x-api-key"}  # never re-added
    assert removed_headers >= {"authorization", "x-api-key", *extra_headers}
    assert removed_params >= {"apikey", "api_key", "access_token", *extra_params}
