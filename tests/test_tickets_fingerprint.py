"""gatehouse.tickets.fingerprint and settings: metric families, stable keys, never shared across envs."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from gatehouse.tickets.fingerprint import (
    Fingerprint,
    alternatives,
    digest_label,
    hour_bucket,
    metric_family,
)
from gatehouse.tickets.proposal import PROPOSAL_TYPES
from gatehouse.tickets.settings import FINGERPRINT_FIELDS, TicketSettings

A = "apigee.googleapis.com/"


@pytest.mark.parametrize(
    ("metric", "resource_type", "family", "why"),
    [
        (A + "proxy/latencies", A + "Proxy", "proxy", ""),
        (A + "proxyv2/latencies_percentile", A + "ProxyV2", "proxy", ""),
        (A + "target/latencies", A + "Target", "target", ""),
        (A + "targetv2/latencies_percentile", A + "TargetV2", "target", ""),
        (A + "target/latencies", A + "Proxy", "target", ""),  # target metric on the Proxy resource
        (A + "proxy/latencies", A + "Environment", "proxy", ""),
        (A + "proxy/latencies", None, "proxy", ""),
        (A + "proxy/request_count", A + "Proxy", None, "is not an Apigee latency metric"),
        (A + "policy/latencies", A + "Proxy", None, "is not an Apigee latency metric"),
        ("test.googleapis.com/metric", "example_resource", None, "is not an Apigee latency metric"),
        (None, "uptime_url", None, "metric (none) is not"),
        (A + "proxy/latencies", "gce_instance", None, "is not an Apigee resource"),
    ],
)
def test_metric_family(metric: str | None, resource_type: str | None, family: str | None, why: str) -> None:
    got, reason = metric_family(metric, resource_type)
    assert got == family
    assert why in reason


def fp(**overrides: str) -> Fingerprint:
    values = {
        "project": "shop-prod-417",
        "environment": "prod",
        "proxy": "orders-v1",
        "family": "proxy",
        "proposal": "target-loadbalancer",
    }
    values.update(overrides)
    fields = TicketSettings().fingerprint_fields
    return Fingerprint(**values, fields=fields)  # type: ignore[arg-type]


def test_fingerprint_is_stable_and_readable() -> None:
    a, b = fp(), fp()
    assert a.digest == b.digest
    assert (
        a.key
        == "project=shop-prod-417/environment=prod/proxy=orders-v1/family=proxy/proposal=target-loadbalancer"
    )
    assert re.fullmatch(r"gatehouse-fp-[0-9a-f]{12}", a.label)
    assert re.fullmatch(r"[0-9a-f]{32}", a.doc_id)
    assert len(a.label) <= 50  # GitHub label limit


@pytest.mark.parametrize(
    "change",
    [
        {"environment": "staging"},
        {"project": "shop-test-101"},
        {"proxy": "orders-v2"},
        {"family": "target"},
        {"proposal": "target-timeouts"},
    ],
)
def test_every_field_changes_the_fingerprint(change: dict[str, str]) -> None:
    assert fp(**change).digest != fp().digest


def test_fields_are_configurable_and_part_of_the_hash() -> None:
    coarse = TicketSettings(fingerprint_fields=("project", "environment", "proxy"))
    a = Fingerprint("p-12345", "prod", "x", "proxy", "target-timeouts", coarse.fingerprint_fields)
    b = Fingerprint("p-12345", "prod", "x", "target", "spike-arrest", coarse.fingerprint_fields)
    assert a.digest == b.digest  # family and proposal not part of the identity
    assert a.key == "project=p-12345/environment=prod/proxy=x"
    full = Fingerprint("p-12345", "prod", "x", "proxy", "target-timeouts", FINGERPRINT_FIELDS)
    assert full.digest != a.digest


def test_field_order_is_canonical() -> None:
    settings = TicketSettings(fingerprint_fields=("proposal", "proxy", "environment", "project"))
    assert settings.fingerprint_fields == ("project", "environment", "proxy", "proposal")


@pytest.mark.parametrize(
    "fields",
    [
        ("project", "proxy"),
        ("environment", "proxy"),
        ("project", "environment"),
        ("project", "project", "environment"),
    ],
)
def test_environment_project_and_proxy_are_required(fields: tuple[str, ...]) -> None:
    with pytest.raises(ValidationError):
        TicketSettings(fingerprint_fields=fields)  # type: ignore[arg-type]


def test_no_delimiter_collisions() -> None:
    # proxy names may contain '.', '-' and '_'; the hash covers structured values, not a joined string
    assert fp(proxy="a.b", environment="c").digest != fp(proxy="a", environment="b.c").digest


def test_alternatives_cover_every_proposal_type() -> None:
    alts = alternatives(fp(), PROPOSAL_TYPES)
    assert {a.proposal for a in alts} == set(PROPOSAL_TYPES)
    assert fp().digest in {a.digest for a in alts}
    coarse = Fingerprint("p-12345", "prod", "x", "proxy", "investigate", ("project", "environment", "proxy"))
    assert alternatives(coarse, PROPOSAL_TYPES) == [coarse]


def test_hour_bucket_is_utc() -> None:
    assert hour_bucket(1_741_963_860) == "2025031414"
    assert digest_label("2025031414") == "gatehouse-digest-2025031414"
