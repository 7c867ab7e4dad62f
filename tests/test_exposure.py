"""The exposure contract: reading Cloud Run services (v1 and v2) and turning labels into a ProxySpec."""

from __future__ import annotations

import copy
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest

from gatehouse.errors import InputError, TransientError
from gatehouse.exposure import (
    ExposureError,
    NotExposed,
    ProductSpec,
    ProxySpec,
    QuotaOverride,
    RunService,
    ServiceNotReady,
    desired,
    proxy_name,
)
from gatehouse.profiles import ProfileSet, load_profiles, parse_profiles

FIXTURES = Path(__file__).parent / "fixtures" / "services"
PROFILES = load_profiles()


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


def service(
    labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None, **fields: Any
) -> RunService:
    """The opted-in v2 'orders' service with extra labels/annotations."""
    doc = fixture("v2-apikey.json")
    doc["labels"].update(labels or {})
    doc["annotations"].update(annotations or {})
    doc.update(fields)
    return RunService.from_json(doc)


def unlabelled(annotations: dict[str, str] | None = None) -> RunService:
    """The opted-in v2 'catalog' service, which names no profile."""
    doc = fixture("v2-default-profile.json")
    doc["annotations"].update(annotations or {})
    return RunService.from_json(doc)


def spec_of(svc: RunService, profiles: ProfileSet = PROFILES, **kwargs: Any) -> ProxySpec:
    result = desired(
        svc, profiles, default_environments=kwargs.pop("default_environments", ["test"]), **kwargs
    )
    assert isinstance(result, ProxySpec), result
    return result


# --------------------------------------------------------------------------------------------------
# RunService.from_json


def test_v2_service_is_read() -> None:
    svc = RunService.from_json(fixture("v2-apikey.json"))
    assert (svc.project, svc.region, svc.name) == ("acme-orders-prod", "europe-west1", "orders")
    assert svc.uri == "https://orders-7hq2xk4pza-ew.a.run.app"
    assert svc.urls == ("https://orders-412345678901.europe-west1.run.app", svc.uri)
    assert svc.labels["apigee-profile"] == "apikey"
    assert svc.service_account == "orders-runtime@acme-orders-prod.iam.gserviceaccount.com"
    assert svc.ingress == "INGRESS_TRAFFIC_ALL"
    assert svc.ready is True
    assert svc.generation == 7
    assert svc.resource_name == "projects/acme-orders-prod/locations/europe-west1/services/orders"


def test_v1_gcloud_describe_is_read() -> None:
    svc = RunService.from_json(fixture("v1-gcloud-describe.json"))
    assert (svc.project, svc.region, svc.name) == ("412345678901", "europe-west1", "orders")
    assert svc.uri == "https://orders-7hq2xk4pza-ew.a.run.app"
    assert svc.urls == ("https://orders-412345678901.europe-west1.run.app", svc.uri)
    assert svc.ingress == "INGRESS_TRAFFIC_ALL"
    assert svc.service_account == "orders-runtime@acme-orders-prod.iam.gserviceaccount.com"
    assert svc.ready is True
    assert svc.generation == 7


def test_explicit_project_and_region_override_the_document() -> None:
    svc = RunService.from_json(
        fixture("v1-gcloud-describe.json"), project="acme-orders-prod", region="europe-west4"
    )
    assert (svc.project, svc.region) == ("acme-orders-prod", "europe-west4")


def test_v1_and_v2_of_the_same_service_give_the_same_spec() -> None:
    from_v2 = spec_of(RunService.from_json(fixture("v2-apikey.json")))
    from_v1 = spec_of(RunService.from_json(fixture("v1-gcloud-describe.json"), project="acme-orders-prod"))
    assert from_v1 == from_v2


def test_service_without_url_is_read_as_not_ready() -> None:
    svc = RunService.from_json(fixture("v2-not-ready.json"))
    assert svc.uri is None
    assert svc.urls == ()
    assert svc.ready is None


def test_v1_ready_false_and_unknown() -> None:
    doc = fixture("v1-gcloud-describe.json")
    doc["status"]["conditions"][0]["status"] = "False"
    assert RunService.from_json(doc).ready is False
    doc["status"]["conditions"][0]["status"] = "Unknown"
    assert RunService.from_json(doc).ready is None


def test_labels_are_read_only() -> None:
    svc = RunService.from_json(fixture("v2-apikey.json"))
    with pytest.raises(TypeError):
        svc.labels["apigee-expose"] = "false"  # type: ignore[index]


def _v2(**changes: Any) -> dict[str, Any]:
    doc = fixture("v2-apikey.json")
    doc.update(changes)
    return doc


def _v1(mutate: Any) -> dict[str, Any]:
    doc = fixture("v1-gcloud-describe.json")
    mutate(doc)
    return doc


MALFORMED: list[tuple[str, Any, str]] = [
    ("list", [], "must be a JSON object, got list"),
    ("neither form", {"kind": "Service"}, "not a Cloud Run service"),
    ("v2 bad name", _v2(name="orders"), "v2 service name must be projects/P/locations/R/services/S"),
    ("v2 labels not a map", _v2(labels=["a"]), "labels must map strings to strings"),
    (
        "v2 label value not a string",
        _v2(labels={"apigee-expose": True}),
        "labels must map strings to strings",
    ),
    ("v2 uri not a string", _v2(uri=42), "field uri must be a string"),
    ("v2 urls not a list", _v2(urls="https://x"), "field urls must be a list of strings"),
    ("v2 generation", _v2(generation="seven"), "generation must be a non-negative integer"),
    ("v2 template not an object", _v2(template="x"), "field template must be an object"),
    (
        "v2 bad service name",
        _v2(name="projects/p-123456/locations/europe-west1/services/Orders"),
        "service name",
    ),
    ("v2 bad region", _v2(name="projects/acme-orders-prod/locations/mars/services/orders"), "invalid region"),
    ("v2 bad project", _v2(name="projects/A!/locations/europe-west1/services/orders"), "invalid project"),
    (
        "v1 wrong api",
        _v1(lambda d: d.update(apiVersion="apps/v1")),
        "v1 service needs apiVersion serving.knative.dev/v1",
    ),
    ("v1 revision", _v1(lambda d: d.update(kind="Revision")), "not a Service"),
    (
        "v1 no location",
        _v1(lambda d: d["metadata"]["labels"].pop("cloud.googleapis.com/location")),
        "cloud.googleapis.com/location label",
    ),
    (
        "v1 urls not json",
        _v1(lambda d: d["metadata"]["annotations"].update({"run.googleapis.com/urls": "[oops"})),
        "run.googleapis.com/urls is not a JSON list of strings",
    ),
    ("v1 conditions", _v1(lambda d: d["status"].update(conditions={})), "status.conditions must be a list"),
]


@pytest.mark.parametrize(("case", "doc", "message"), MALFORMED, ids=[case for case, _, _ in MALFORMED])
def test_malformed_services_are_input_errors(case: str, doc: Any, message: str) -> None:
    with pytest.raises(InputError) as info:
        RunService.from_json(doc)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------------------------------
# Opt-in


@pytest.mark.parametrize(
    ("fixture_name", "reason"),
    [
        ("v2-not-opted-in.json", "label apigee-expose is not set"),
        ("v2-opted-out.json", "label apigee-expose is 'false', not 'true'"),
    ],
)
def test_services_that_did_not_opt_in_are_not_exposed(fixture_name: str, reason: str) -> None:
    result = desired(RunService.from_json(fixture(fixture_name)), PROFILES, default_environments=["test"])
    assert result == NotExposed(reason)


@pytest.mark.parametrize("value", ["True", "yes", "1", "", "true ", "tru\u0435"])
def test_only_the_exact_value_true_opts_in(value: str) -> None:
    result = desired(service({"apigee-expose": value}), PROFILES, default_environments=["test"])
    assert isinstance(result, NotExposed)
    assert "not 'true'" in result.reason


def test_invalid_annotations_of_services_that_did_not_opt_in_are_ignored() -> None:
    svc = service({"apigee-expose": "false"}, {"gatehouse.dev/base-path": "nope", "gatehouse.dev/typo": "x"})
    assert isinstance(desired(svc, PROFILES, default_environments=["test"]), NotExposed)


def test_opted_in_service_without_url_is_transient() -> None:
    svc = RunService.from_json(fixture("v2-not-ready.json"))
    with pytest.raises(ServiceNotReady) as info:
        desired(svc, PROFILES, default_environments=["test"])
    assert isinstance(info.value, TransientError)
    assert "projects/acme-orders-prod/locations/europe-west1/services/search" in str(info.value)


def test_invalid_contract_is_reported_before_readiness() -> None:
    doc = fixture("v2-not-ready.json")
    doc["annotations"]["gatehouse.dev/base-path"] = "relative"
    with pytest.raises(ExposureError):
        desired(RunService.from_json(doc), PROFILES, default_environments=["test"])


# --------------------------------------------------------------------------------------------------
# ProxySpec


def test_spec_of_a_plain_opted_in_service() -> None:
    svc = RunService.from_json(fixture("v2-default-profile.json"))
    spec = spec_of(svc, default_environments=["test", "prod"])
    assert spec == ProxySpec(
        proxy_name=proxy_name("acme-orders-prod", "europe-west1", "catalog"),
        project="acme-orders-prod",
        region="europe-west1",
        service="catalog",
        target_url="https://catalog-7hq2xk4pza-ew.a.run.app",
        audience="https://catalog-7hq2xk4pza-ew.a.run.app",
        base_path="/catalog",
        profile="apikey",
        environments=("prod", "test"),
        # every service gets its own product by default, named like its proxy
        product=ProductSpec(name=proxy_name("acme-orders-prod", "europe-west1", "catalog")),
    )


def test_spec_with_every_annotation() -> None:
    spec = spec_of(RunService.from_json(fixture("v2-every-annotation.json")))
    assert spec.base_path == "/v2/inventory"
    assert spec.environments == ("prod", "test")
    assert spec.rate_limit == "30ps"
    assert spec.quota == QuotaOverride(allow=5000, interval=1, time_unit="hour")
    assert spec.target_timeout_ms == 1500
    assert spec.jwt_audience == "https://inventory.api.acme.example"
    assert spec.cors_origins == ("https://shop.acme.example", "https://admin.acme.example:8443")
    assert spec.profile == "jwt"


def test_audience_and_target_are_the_main_url_without_path() -> None:
    spec = spec_of(service(uri="https://orders-7hq2xk4pza-ew.a.run.app/"))
    assert spec.target_url == spec.audience == "https://orders-7hq2xk4pza-ew.a.run.app"


@pytest.mark.parametrize(
    "uri",
    [
        "http://orders.a.run.app",
        "https://orders.a.run.app/v1",
        "https://orders.a.run.app?x=1",
        "https://user@x.run.app",
    ],
)
def test_service_urls_with_paths_or_plain_http_are_rejected(uri: str) -> None:
    with pytest.raises(InputError, match="service URL must be https://host without a path"):
        desired(service(uri=uri), PROFILES, default_environments=["test"])


# --------------------------------------------------------------------------------------------------
# Profile label


def test_default_profile_from_the_profile_set_and_override() -> None:
    svc = RunService.from_json(fixture("v2-default-profile.json"))
    assert spec_of(svc).profile == "apikey"
    assert spec_of(svc, default_profile="oauth2").profile == "oauth2"


def test_a_public_profile_is_never_applied_by_default() -> None:
    svc = RunService.from_json(fixture("v2-default-profile.json"))
    with pytest.raises(InputError, match="default profile 'public' does not authenticate callers"):
        desired(svc, PROFILES, default_environments=["test"], default_profile="public")


def test_an_undefined_default_profile_is_an_error() -> None:
    svc = RunService.from_json(fixture("v2-default-profile.json"))
    with pytest.raises(InputError, match="default profile 'gold' is not defined"):
        desired(svc, PROFILES, default_environments=["test"], default_profile="gold")


@pytest.mark.parametrize(
    ("fixture_name", "profile"),
    [
        ("v2-apikey.json", "apikey"),
        ("v2-jwt.json", "jwt"),
        ("v2-oauth2.json", "oauth2"),
        ("v2-agent.json", "agent"),
        ("v2-public.json", "public"),
    ],
)
def test_profile_label_picks_the_profile(fixture_name: str, profile: str) -> None:
    assert spec_of(RunService.from_json(fixture(fixture_name))).profile == profile


@pytest.mark.parametrize("value", ["gold", "APIKEY", "apikey\n", "apik\u0435y", "<jwt>"])
def test_unknown_profile_is_rejected(value: str) -> None:
    with pytest.raises(ExposureError) as info:
        desired(service({"apigee-profile": value}), PROFILES, default_environments=["test"])
    assert str(info.value).startswith("label apigee-profile: unknown profile ")
    assert "(known: agent, apikey, jwt, oauth2, public)" in str(info.value)
    assert info.value.key == "apigee-profile"


# --------------------------------------------------------------------------------------------------
# Annotations: one table per key, valid and invalid


BASE_PATHS_VALID = [
    ("/orders", "/orders"),
    ("/v1/orders", "/v1/orders"),
    ("/v1/orders/*/items", "/v1/orders/*/items"),
    ("/a.b_c~d-e/F9", "/a.b_c~d-e/F9"),
    ("/" + "a" * 254, "/" + "a" * 254),
]
BASE_PATHS_INVALID = [
    ("v1/orders", "must start with '/'"),
    ("/", "'/' alone would route every request"),
    ("/orders/", "must not end with '/'"),
    ("/v1//orders", "must not contain '//'"),
    ("/v1/../admin", "must not contain '.' or '..' segments"),
    ("/v1/./admin", "must not contain '.' or '..' segments"),
    ("/*/search", "'*' cannot be the first segment"),
    ("/v1/**/x", "'*' must be a whole segment, and '**' is not supported"),
    ("/v1/ord*", "'*' must be a whole segment"),
    ("/v1/or ders", "segments may contain only"),
    ("/v1/%2e%2e", "segments may contain only"),
    ("/v1/<x>", "segments may contain only"),
    ("/v1\r\n/x", "segments may contain only"),
    ("/v1\u2215admin", "segments may contain only"),  # DIVISION SLASH look-alike
    ("/v1\uff0fadmin", "segments may contain only"),  # FULLWIDTH SOLIDUS
    ("/\u202eorders", "segments may contain only"),  # RIGHT-TO-LEFT OVERRIDE
    ("/ord\u200bers", "segments may contain only"),  # ZERO WIDTH SPACE
    ("/v1/\x00", "segments may contain only"),
    ("/" + "a" * 255, "must be at most 255 characters"),
]
ENVIRONMENTS_VALID = [
    ("prod", ("prod",)),
    ("test,prod", ("prod", "test")),
    (" test , prod ", ("prod", "test")),
    ("e" + "1" * 31, ("e" + "1" * 31,)),
]
ENVIRONMENTS_INVALID = [
    ("", "must list at least one Apigee environment"),
    (" , ", "must list at least one Apigee environment"),
    ("Prod", "invalid environment name 'Prod'"),
    ("1prod", "invalid environment name '1prod'"),
    ("prod_eu", "invalid environment name 'prod_eu'"),
    ("e" + "1" * 32, "invalid environment name"),
    ("prod\ntest", "invalid environment name"),
    ("test,test", "an environment is listed more than once"),
    (",".join(f"e{i}" for i in range(17)), "at most 16 environments (got 17)"),
]
RATES_VALID = [
    ("30ps", "30ps"),
    ("1000ps", "1000ps"),
    ("600pm", "600pm"),
    ("60000pm", "60000pm"),
    ("1pm", "1pm"),
]
RATES_INVALID = [
    ("1001ps", "1001ps exceeds Apigee's SpikeArrest limit of 1000ps"),
    ("60001pm", "60001pm exceeds Apigee's SpikeArrest limit of 60000pm"),
    ("0ps", "must be a whole number of requests per second or minute"),
    ("30", "must be a whole number of requests per second or minute"),
    ("30 ps", "must be a whole number"),
    ("30PS", "must be a whole number"),
    ("30ph", "must be a whole number"),
    ("-5ps", "must be a whole number"),
    ("\u0663\u0660ps", "must be a whole number"),  # Arabic-Indic digits
]
QUOTAS_VALID = [
    ("1000/hour", QuotaOverride(1000, 1, "hour")),
    ("50/minute", QuotaOverride(50, 1, "minute")),
    ("7/day", QuotaOverride(7, 1, "day")),
    ("100/week", QuotaOverride(100, 1, "week")),
    ("1000000000/month", QuotaOverride(1_000_000_000, 1, "month")),
]
QUOTAS_INVALID = [
    ("1000", "must look like '1000/hour' (units: minute, hour, day, week, month)"),
    ("1000/hours", "must look like '1000/hour'"),
    ("0/hour", "must look like '1000/hour'"),
    ("1000/year", "must look like '1000/hour'"),
    ("1000 / hour", "must look like '1000/hour'"),
    ("1000000001/hour", "1000000001 requests is more than the 1000000000 gatehouse accepts"),
]
TIMEOUTS_VALID = [("30s", 30_000), ("1500ms", 1500), ("100ms", 100), ("300s", 300_000)]
TIMEOUTS_INVALID = [
    ("99ms", "must be between 100ms and 300s (got 99ms)"),
    ("301s", "must be between 100ms and 300s (got 301s)"),
    ("30", "must look like '30s' or '1500ms'"),
    ("1m", "must look like '30s' or '1500ms'"),
    ("1.5s", "must look like '30s' or '1500ms'"),
    ("0s", "must look like '30s' or '1500ms'"),
]
AUDIENCES_VALID = [
    ("https://inventory.api.acme.example", "https://inventory.api.acme.example"),
    ("api://default", "api://default"),
    ("123-abc.apps.googleusercontent.com", "123-abc.apps.googleusercontent.com"),
]
AUDIENCES_INVALID = [
    ("", "must be 1-255 URI characters"),
    ("{request.header.aud}", "must be 1-255 URI characters"),
    ("aud ience", "must be 1-255 URI characters"),
    ("<Audience/>", "must be 1-255 URI characters"),
    ("a" * 256, "must be 1-255 URI characters"),
    ("https://x.example\r\nX-Evil: 1", "must be 1-255 URI characters"),
]
ORIGINS_VALID = [
    ("https://app.acme.example", ("https://app.acme.example",)),
    ("https://a.example, https://b.example:8443", ("https://a.example", "https://b.example:8443")),
    ("*", ("*",)),
    ("https://xn--80ak6aa92e.com", ("https://xn--80ak6aa92e.com",)),
]
ORIGINS_INVALID = [
    ("http://app.acme.example", "origin must look like 'https://app.example.com'"),
    ("https://app.acme.example/", "origin must look like"),
    ("https://App.acme.example", "origin must look like"),
    ("https://app.acme.example/path", "origin must look like"),
    ("https://app.acme.example:99999", "origin port out of range"),
    ("*, https://a.example", "'*' cannot be combined with other origins"),
    ("https://a.example,https://a.example", "origins are listed more than once"),
    ("https://\u0430pple.com", "origin must look like"),  # Cyrillic a
    (",", "must list at least one origin"),
]

ALLOW_SUBPATHS_VALID = [
    ("/admin", ("/admin",)),
    ("/admin, /internal", ("/admin", "/internal")),
    ("/v2/admin.x_y~z-1", ("/v2/admin.x_y~z-1",)),
    ("*", ("*",)),
]
ALLOW_SUBPATHS_INVALID = [
    ("", "must list at least one sub-path (or '*')"),
    (" , ", "must list at least one sub-path (or '*')"),
    ("admin", "sub-path must start with '/'"),
    ("/", "'/' alone is the path itself; '*' allows every sub-path"),
    ("/admin/", "sub-path must not end with '/'"),
    ("/a//b", "sub-path must not contain '//'"),
    ("/a/../b", "sub-path must not contain '.' or '..' segments"),
    ("/a/*", "'*' stands alone and allows every sub-path"),
    ("*, /admin", "'*' cannot be combined with other sub-paths"),
    ("/admin,/admin", "a sub-path is listed more than once"),
    ("/ad min", "segments may contain only"),
    ("/ad\u2215min", "segments may contain only"),
    (",".join(f"/p{i}" for i in range(33)), "at most 32 sub-paths (got 33)"),
    ("/" + "a" * 255, "sub-path must be at most 255 characters"),
]

KEY_TABLES: list[tuple[str, str, list[tuple[str, Any]], list[tuple[str, str]], str]] = [
    ("gatehouse.dev/base-path", "base_path", BASE_PATHS_VALID, BASE_PATHS_INVALID, "apikey"),
    ("gatehouse.dev/environments", "environments", ENVIRONMENTS_VALID, ENVIRONMENTS_INVALID, "apikey"),
    ("gatehouse.dev/rate-limit", "rate_limit", RATES_VALID, RATES_INVALID, "apikey"),
    ("gatehouse.dev/quota", "quota", QUOTAS_VALID, QUOTAS_INVALID, "apikey"),
    ("gatehouse.dev/target-timeout", "target_timeout_ms", TIMEOUTS_VALID, TIMEOUTS_INVALID, "apikey"),
    ("gatehouse.dev/jwt-audience", "jwt_audience", AUDIENCES_VALID, AUDIENCES_INVALID, "jwt"),
    ("gatehouse.dev/cors-origins", "cors_origins", ORIGINS_VALID, ORIGINS_INVALID, "apikey"),
    (
        "gatehouse.dev/allow-subpaths",
        "allow_subpaths",
        ALLOW_SUBPATHS_VALID,
        ALLOW_SUBPATHS_INVALID,
        "apikey",
    ),
]
VALID_CASES = [
    pytest.param(key, field, value, expected, profile, id=f"{key}={value[:40]!r}")
    for key, field, valid, _, profile in KEY_TABLES
    for value, expected in valid
]
INVALID_CASES = [
    pytest.param(key, value, message, profile, id=f"{key}={value[:40]!r}")
    for key, _, _, invalid, profile in KEY_TABLES
    for value, message in invalid
]


@pytest.mark.parametrize(("key", "field", "value", "expected", "profile"), VALID_CASES)
def test_valid_annotation_values(key: str, field: str, value: str, expected: Any, profile: str) -> None:
    annotations = {key: value}
    if profile == "jwt" and key != "gatehouse.dev/jwt-audience":
        annotations["gatehouse.dev/jwt-audience"] = "api://default"
    spec = spec_of(service({"apigee-profile": profile}, annotations))
    assert getattr(spec, field) == expected


@pytest.mark.parametrize(("key", "value", "message", "profile"), INVALID_CASES)
def test_invalid_annotation_values(key: str, value: str, message: str, profile: str) -> None:
    with pytest.raises(ExposureError) as info:
        desired(service({"apigee-profile": profile}, {key: value}), PROFILES, default_environments=["test"])
    text = str(info.value)
    assert text.startswith(f"annotation {key}: ")
    assert message in text
    assert info.value.key == key
    # the message is one printable line whatever the input
    assert text.isprintable()


def test_values_are_echoed_escaped_and_truncated() -> None:
    with pytest.raises(ExposureError) as info:
        desired(
            service(annotations={"gatehouse.dev/rate-limit": "\u202e" + "9" * 500}),
            PROFILES,
            default_environments=["t"],
        )
    assert "'\\u202e" in str(info.value)
    assert "(501 characters)" in str(info.value)


def test_huge_values_are_rejected_before_parsing() -> None:
    with pytest.raises(ExposureError, match=r"too long \(100000 characters; at most 2048\)"):
        desired(
            service(annotations={"gatehouse.dev/base-path": "/a" * 50_000}),
            PROFILES,
            default_environments=["t"],
        )


def test_environments_default_and_allow_list() -> None:
    assert spec_of(service(), default_environments=["test", "dev"]).environments == ("dev", "test")
    allowed = spec_of(
        service(annotations={"gatehouse.dev/environments": "prod"}), allowed_environments={"prod"}
    )
    assert allowed.environments == ("prod",)
    with pytest.raises(ExposureError, match="environment 'prod' is not allowed \\(allowed: dev, test\\)"):
        spec_of(
            service(annotations={"gatehouse.dev/environments": "prod"}), allowed_environments={"test", "dev"}
        )
    with pytest.raises(InputError, match="no default Apigee environments configured"):
        spec_of(service(), default_environments=[])


def test_jwt_profile_needs_an_audience() -> None:
    with pytest.raises(ExposureError, match="required: the profile verifies JWTs but names no audience"):
        desired(service({"apigee-profile": "jwt"}), PROFILES, default_environments=["test"])


def test_jwt_audience_in_the_profile_is_enough() -> None:
    profiles = parse_profiles(
        "default: okta\nprofiles:\n  okta:\n    auth:\n      mode: jwt\n"
        "      jwks_uri: https://acme.okta.com/oauth2/default/v1/keys\n"
        "      issuer: https://acme.okta.com/oauth2/default\n      audience: api://default\n"
    )
    assert spec_of(unlabelled(), profiles).jwt_audience is None


def test_jwt_audience_needs_a_jwt_profile() -> None:
    with pytest.raises(ExposureError, match="jwt-audience: the profile's auth mode is 'apikey', not 'jwt'"):
        desired(
            service(annotations={"gatehouse.dev/jwt-audience": "api://x"}),
            PROFILES,
            default_environments=["t"],
        )


def test_wildcard_origin_is_refused_when_the_profile_allows_credentials() -> None:
    profiles = parse_profiles(
        "default: web\nprofiles:\n  web:\n    auth: {mode: apikey}\n"
        "    cors: {allow_origins: ['https://app.example.com'], allow_credentials: true}\n"
    )
    with pytest.raises(ExposureError, match="'\\*' cannot be used when the profile allows credentials"):
        spec_of(unlabelled({"gatehouse.dev/cors-origins": "*"}), profiles)


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("gatehouse.dev/basepath", "unknown gatehouse annotation (known: gatehouse.dev/base-path"),
        ("gatehouse.dev/ratelimit", "did you mean gatehouse.dev/rate-limit?"),
        ("gatehouse.dev/allow-subpath", "did you mean gatehouse.dev/allow-subpaths?"),
        ("Gatehouse.dev/base-path", "did you mean gatehouse.dev/base-path?"),
        ("gatehouse.dev/owner", "unknown gatehouse annotation"),
        ("gatehouse.dev/base-path\n", "unknown gatehouse annotation"),
    ],
)
def test_unknown_gatehouse_annotations_are_errors(key: str, message: str) -> None:
    with pytest.raises(ExposureError) as info:
        desired(service(annotations={key: "x"}), PROFILES, default_environments=["test"])
    assert message in str(info.value)
    assert str(info.value).isprintable()


def test_other_annotations_and_labels_are_ignored() -> None:
    plain = spec_of(service())
    noisy = spec_of(
        service(
            {"apigee-exposed": "true", "team": "\u202eevil"},
            {
                "example.com/base-path": "not/a/path",
                "gatehouse.dev.evil/x": "1",
                "run.googleapis.com/x": "<x>",
            },
        )
    )
    assert noisy == plain


# --------------------------------------------------------------------------------------------------
# Proxy names

PROXY_NAME = re.compile(r"[A-Za-z0-9_-]{1,255}")


def test_proxy_name_scheme() -> None:
    digest = hashlib.sha256(b"acme-orders-prod/europe-west1/orders").hexdigest()
    assert proxy_name("acme-orders-prod", "europe-west1", "orders") == f"orders-{digest[:8]}"


def test_proxy_names_are_legal_and_deterministic() -> None:
    longest = "s" + "x" * 62
    for name in (
        proxy_name("acme-orders-prod", "europe-west1", "orders"),
        proxy_name("p" * 30, "us-east4", longest),
    ):
        assert PROXY_NAME.fullmatch(name)
        assert "." not in name
    assert proxy_name("a-project", "us-east1", "svc") == proxy_name("a-project", "us-east1", "svc")


def test_same_service_name_in_other_projects_and_regions_gets_its_own_proxy() -> None:
    specs = [
        spec_of(RunService.from_json(fixture(name)))
        for name in ("v2-apikey.json", "v2-orders-dev-europe.json", "v2-orders-prod-us.json")
    ]
    assert {spec.service for spec in specs} == {"orders"}
    names = {spec.proxy_name for spec in specs}
    assert len(names) == 3
    assert all(name.startswith("orders-") and PROXY_NAME.fullmatch(name) for name in names)


def test_project_number_and_id_give_different_names() -> None:
    # documented: callers pass the project id so the name does not depend on the source format
    assert proxy_name("412345678901", "europe-west1", "orders") != proxy_name(
        "acme-orders-prod", "europe-west1", "orders"
    )


def test_spec_is_deterministic_and_ignores_volatile_fields() -> None:
    doc = fixture("v2-apikey.json")
    changed = copy.deepcopy(doc)
    changed.update(generation="8", etag='"other"', updateTime="2027-01-01T00:00:00Z", observedGeneration="8")
    changed["template"]["revision"] = "orders-00008-xyz"
    changed["labels"]["cost-center"] = "cc-9"
    assert spec_of(RunService.from_json(doc)) == spec_of(RunService.from_json(changed))


def test_allow_subpaths_defaults_to_none() -> None:
    assert spec_of(service()).allow_subpaths == ()


# --------------------------------------------------------------------------------------------------
# gatehouse.dev/openapi


@pytest.mark.parametrize(
    ("value", "path", "bucket", "name"),
    [
        ("/openapi.json", "/openapi.json", None, None),
        ("/v1/api-docs/openapi.yaml", "/v1/api-docs/openapi.yaml", None, None),
        ("gs://specs-bucket/orders/openapi.yaml", None, "specs-bucket", "orders/openapi.yaml"),
        ("gs://my.specs.example.com/a", None, "my.specs.example.com", "a"),
    ],
)
def test_openapi_annotation_names_a_path_or_an_object(
    value: str, path: str | None, bucket: str | None, name: str | None
) -> None:
    doc = fixture("v2-default-profile.json")
    doc["annotations"]["gatehouse.dev/openapi"] = value
    spec = spec_of(RunService.from_json(doc))
    assert spec.openapi is not None
    assert (spec.openapi.path, spec.openapi.bucket, spec.openapi.object) == (path, bucket, name)
    assert spec.openapi.uri == value


@pytest.mark.parametrize(
    "value",
    [
        "openapi.json",
        "https://evil.example.com/openapi.json",
        "/../secrets",
        "//host/x",
        "/a//b",
        "/a/",
        "/a?b=c",
        "/a b",
        "gs://",
        "gs://bucket",
        "gs://bucket/",
        "gs://Bucket/x",
        "gs://ab/x",
        "gs://bucket/../x",
        "gs://bucket/a b",
        "gs://bucket/a\nb",
        "/" + "a" * 300,
    ],
)
def test_openapi_annotation_rejects_anything_else(value: str) -> None:
    doc = fixture("v2-default-profile.json")
    doc["annotations"]["gatehouse.dev/openapi"] = value
    with pytest.raises(ExposureError) as info:
        spec_of(RunService.from_json(doc))
    assert info.value.key == "gatehouse.dev/openapi"


def test_the_ready_revision_is_read_from_both_api_versions() -> None:
    doc = fixture("v2-default-profile.json")
    doc["latestReadyRevision"] = "projects/p/locations/r/services/catalog/revisions/catalog-00002-abc"
    assert RunService.from_json(doc).ready_revision == "catalog-00002-abc"
    doc["latestReadyRevision"] = "projects/p/locations/r/services/catalog/revisions/Not_Valid"
    assert RunService.from_json(doc).ready_revision is None
