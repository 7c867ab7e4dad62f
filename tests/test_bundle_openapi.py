"""The spec in the bundle: where it goes, how it enters the content hash, OASValidation."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest

from gatehouse.bundle import OAS_POLICY, render
from gatehouse.errors import InputError
from gatehouse.exposure import ProxySpec, RunService, desired
from gatehouse.profiles import load_profiles, parse_profiles
from gatehouse.registration.openapi import parse_spec

FIXTURES = Path(__file__).parent / "fixtures"
ORDERS = parse_spec((FIXTURES / "openapi" / "orders-3.0.yaml").read_bytes())
LEDGER = parse_spec((FIXTURES / "openapi" / "ledger-3.1.json").read_bytes())
PROFILES = load_profiles()
VALIDATING = parse_profiles("default: v\nprofiles:\n  v: {auth: {mode: apikey}, validate_requests: true}\n")


def spec_for(profiles: object, annotations: dict[str, str] | None = None) -> ProxySpec:
    doc = json.loads((FIXTURES / "services" / "v2-default-profile.json").read_text())
    doc["annotations"].update(annotations or {"gatehouse.dev/openapi": "/openapi.yaml"})
    doc["labels"].pop("apigee-profile", None)
    spec = desired(RunService.from_json(doc), profiles, default_environments=["test"])  # type: ignore[arg-type]
    assert isinstance(spec, ProxySpec)
    return spec


def test_the_spec_is_in_resources_oas_byte_for_byte() -> None:
    spec = spec_for(PROFILES)
    bundle = render(spec, PROFILES.get(spec.profile), openapi=ORDERS)
    assert bundle.files["apiproxy/resources/oas/openapi.yaml"] == ORDERS.content
    with zipfile.ZipFile(io.BytesIO(bundle.zip_bytes)) as archive:
        assert archive.read("apiproxy/resources/oas/openapi.yaml") == ORDERS.content


def test_the_content_hash_follows_the_spec_and_can_be_computed_from_its_identity() -> None:
    spec = spec_for(PROFILES)
    profile = PROFILES.get(spec.profile)
    full = render(spec, profile, openapi=ORDERS)
    from_label = render(spec, profile, openapi=ORDERS.identity)
    assert from_label.content_hash == full.content_hash and from_label.zip_bytes == b""
    other = parse_spec(ORDERS.content.replace(b'version: "1.4"', b'version: "1.5"'))
    assert render(spec, profile, openapi=other).content_hash != full.content_hash
    assert render(spec, profile).content_hash != full.content_hash
    assert render(spec, profile, openapi=ORDERS).zip_bytes == full.zip_bytes  # deterministic


def test_oas_validation_references_the_spec_file() -> None:
    spec = spec_for(VALIDATING)
    bundle = render(spec, VALIDATING.get("v"), openapi=ORDERS)
    policy = bundle.files[f"apiproxy/policies/{OAS_POLICY}.xml"].decode()
    assert "<OASResource>oas://openapi.yaml</OASResource>" in policy and "<Source>request</Source>" in policy
    endpoint = bundle.files["apiproxy/proxies/default.xml"].decode()
    steps = [line.strip() for line in endpoint.splitlines() if "<Name>" in line]
    # after authentication and quota, before the request headers are rewritten
    assert steps.index(f"<Name>{OAS_POLICY}</Name>") == steps.index("<Name>AM-RequestHeaders</Name>") - 1


def test_oas_validation_refuses_3_1_and_a_missing_spec() -> None:
    spec = spec_for(VALIDATING)
    with pytest.raises(InputError, match=r"OpenAPI 3\.0 only"):
        render(spec, VALIDATING.get("v"), openapi=LEDGER)
    with pytest.raises(InputError, match=r"gatehouse\.dev/openapi"):
        render(spec, VALIDATING.get("v"))


def test_no_spec_no_oas_files() -> None:
    spec = spec_for(PROFILES, {})
    bundle = render(spec, PROFILES.get(spec.profile))
    assert not [name for name in bundle.files if "resources/oas" in name or OAS_POLICY in name]
