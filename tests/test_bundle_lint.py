"""apigeelint (--profile apigeex) on bundles rendered for every shipped profile and an all-options one.

apigeelint is pinned in tools/node (package.json + package-lock.json); CI runs
``npm ci --prefix tools/node``. All bundles are linted in parallel, once per module.

Allowed warnings, each a deliberate choice:
- TD002 "using a Target Server simplifies CI/CD": the target is the service's own run.app URL.
  TargetServers are environment-level objects; one per service per environment would add
  management calls and state to keep in sync, and the Google ID token audience must be that
  literal URL anyway.
- BN013 "Unreferenced resources" for the spec in resources/oas/ of a profile without
  ``validate_requests``: API hub reads it from there; no policy needs to.
- TD007 "Missing TrustStore in SSLInfo", only when the profile sets no ``target.trust_store``:
  gatehouse always renders ``<Enforce>true</Enforce>`` (strict certificate and host name checks)
  against the runtime's default trust, which covers *.run.app. Omitting SSLInfo would silence the
  warning by giving up the strict check; a profile that pins a truststore gets no warning.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from gatehouse.bundle import render, write_tree
from gatehouse.exposure import ProxySpec, RunService, desired
from gatehouse.profiles import ProfileSet, load_profiles, parse_profiles
from gatehouse.registration.openapi import OpenApiSpec, parse_spec

pytestmark = pytest.mark.lint

REPO = Path(__file__).resolve().parents[1]
APIGEELINT = REPO / "tools" / "node" / "node_modules" / ".bin" / "apigeelint"
FIXTURES = Path(__file__).parent / "fixtures" / "services"
PROFILES = load_profiles()
ERROR, WARNING = 2, 1

EVERYTHING = parse_profiles(
    r"""
default: everything
profiles:
  everything:
    auth: {mode: apikey, query_param: apikey}
    spike_arrest: {rate: 30ps}
    quota: {allow: 500, interval: 1, time_unit: minute, from_product: true}
    cors:
      allow_origins: [https://app.example.com, "https://admin.example.com:8443"]
      allow_methods: [GET, POST]
      expose_headers: [x-request-id]
      max_age_seconds: 600
      allow_credentials: true
    headers:
      request:
        set: {x-gatehouse-client-id: "{client_id}", x-forwarded-by: gatehouse}
        remove: [cookie]
      response:
        set: {strict-transport-security: max-age=31536000}
        remove: [server, x-powered-by]
    target:
      connect_timeout_ms: 2000
      read_timeout_ms: 30000
      trust_store: ref://gatehouse-truststore
      mtls: {key_store: ref://gatehouse-client-keystore, key_alias: gatehouse-client}
    threat_protection:
      json_payload: {}
      xml_payload: {}
      regex:
        uri_path: ['(?i)(drop\s+table|<\s*script)']
        query_params: {q: ['<\s*script']}
        headers: {user-agent: ['(?i)sqlmap']}
  bearer-everything:
    auth: {mode: oauth2, scopes: [orders.read]}
    spike_arrest: {rate: 6000pm}
    quota: {allow: 50, time_unit: day}
    cors: {allow_origins: [https://app.example.com]}
    headers: {response: {remove: [server]}}
    target: {trust_store: ref://gatehouse-truststore}
  validating:
    auth: {mode: apikey}
    spike_arrest: {rate: 30ps}
    validate_requests: true
"""
)
SPECS = Path(__file__).parent / "fixtures" / "openapi"
ORDERS_SPEC = parse_spec((SPECS / "orders-3.0.yaml").read_bytes())
LEDGER_SPEC = parse_spec((SPECS / "ledger-3.1.json").read_bytes())


def _spec(fixture_name: str, profiles: ProfileSet, profile: str, annotations: dict[str, str]) -> ProxySpec:
    doc = json.loads((FIXTURES / fixture_name).read_text())
    doc["labels"]["apigee-profile"] = profile
    doc["annotations"].update(annotations)
    spec = desired(RunService.from_json(doc), profiles, default_environments=["test"])
    assert isinstance(spec, ProxySpec)
    return spec


def _cases() -> dict[str, tuple[ProfileSet, ProxySpec]]:
    cases: dict[str, tuple[ProfileSet, ProxySpec]] = {}
    cases["validating-with-spec"] = (
        EVERYTHING,
        _spec("v2-default-profile.json", EVERYTHING, "validating", {}),
    )
    cases["apikey-with-spec"] = (PROFILES, _spec("v2-default-profile.json", PROFILES, "apikey", {}))
    for name in PROFILES.names:
        extra = {"gatehouse.dev/jwt-audience": "api://default"} if name == "jwt" else {}
        cases[name] = (PROFILES, _spec("v2-default-profile.json", PROFILES, name, extra))
    cases["jwt-every-annotation"] = (PROFILES, _spec("v2-every-annotation.json", PROFILES, "jwt", {}))
    overrides = {
        "gatehouse.dev/base-path": "/v1/catalog/*/items",
        "gatehouse.dev/rate-limit": "600pm",
        "gatehouse.dev/quota": "100/minute",
        "gatehouse.dev/target-timeout": "1500ms",
    }
    for name in EVERYTHING.names:
        if EVERYTHING.profiles[name].validate_requests:
            continue  # needs a spec: the case above
        cases[name] = (EVERYTHING, _spec("v2-default-profile.json", EVERYTHING, name, overrides))
    return cases


CASES = _cases()
# the spec each case's bundle carries (apiproxy/resources/oas/)
WITH_SPEC: dict[str, OpenApiSpec] = {"validating-with-spec": ORDERS_SPEC, "apikey-with-spec": LEDGER_SPEC}


@pytest.fixture(scope="module")
def lint_reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    if not APIGEELINT.exists():
        pytest.fail(f"apigeelint is not installed at {APIGEELINT}: run `npm ci --prefix tools/node`")
    root = tmp_path_factory.mktemp("bundles")
    processes = {}
    for name, (profiles, spec) in CASES.items():
        openapi = WITH_SPEC.get(name)
        write_tree(render(spec, profiles.profiles[spec.profile], openapi=openapi), root / name)
        command = [str(APIGEELINT), "-s", str(root / name / "apiproxy"), "-f", "json.js"]
        processes[name] = subprocess.Popen(
            [*command, "--profile", "apigeex", "--norc"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    reports = {}
    for name, process in processes.items():
        stdout, stderr = process.communicate(timeout=120)
        try:
            reports[name] = json.loads(stdout)
        except json.JSONDecodeError:
            pytest.fail(f"apigeelint gave no JSON for {name} (exit {process.returncode}): {stderr or stdout}")
    return reports


def _messages(report: list[dict[str, Any]], severity: int) -> list[str]:
    return [
        f"{Path(entry['filePath']).name}:{message.get('line')}: {message['ruleId']} {message['message']}"
        for entry in report
        for message in entry["messages"]
        if message["severity"] == severity
    ]


def _allowed_warnings(name: str) -> set[str]:
    profiles, spec = CASES[name]
    allowed = {"TD002"}
    if profiles.profiles[spec.profile].target.trust_store is None:
        allowed.add("TD007")
    if name in WITH_SPEC and not profiles.profiles[spec.profile].validate_requests:
        allowed.add("BN013")  # the spec is there for API hub; no policy references it
    return allowed


@pytest.mark.parametrize("name", list(CASES))
def test_bundle_has_no_lint_errors(name: str, lint_reports: dict[str, list[dict[str, Any]]]) -> None:
    assert _messages(lint_reports[name], ERROR) == []


@pytest.mark.parametrize("name", list(CASES))
def test_bundle_has_only_the_allowed_warnings(
    name: str, lint_reports: dict[str, list[dict[str, Any]]]
) -> None:
    warnings = _messages(lint_reports[name], WARNING)
    rules = {warning.split(": ", 1)[1].split(" ", 1)[0] for warning in warnings}
    assert rules == _allowed_warnings(name), warnings
    assert len(warnings) == len(rules)  # each allowed warning appears once, on the target
