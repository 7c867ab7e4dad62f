"""ApigeeAnalytics against the Apigee stand-in: the stats query (format, parsing round trip through
gatehouse.tickets.evidence) and the deployed bundle read."""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from io import BytesIO
from typing import Any

import pytest
import requests

from gatehouse.adapters.apigee import ApigeeClient
from gatehouse.adapters.apigee_analytics import ApigeeAnalytics, time_range
from gatehouse.adapters.http import RateLimiter
from gatehouse.errors import InputError
from gatehouse.local.standins import apigee
from gatehouse.local.standins.server import Handle
from gatehouse.tickets.evidence import SELECT, build_evidence, parse_stats
from gatehouse.tickets.proxyconfig import parse_bundle
from tests.tickets_fakes import T0, direct_bundle, scenario_minutes

ORG = "shop-org"
SA = "gatehouse-proxy@shop-org.iam.gserviceaccount.com"


@pytest.fixture
def stand() -> Iterator[Handle]:
    handle = apigee.start(org=ORG, envs=("prod", "test"), deploy_delay_ms=0)
    yield handle
    handle.stop()


@pytest.fixture
def client(stand: Handle) -> ApigeeClient:
    return ApigeeClient(ORG, endpoint=stand.url, anonymous=True, calls_per_minute=60_000, retry_max_wait=1.0)


def seed(stand: Handle, proxy: str, minutes: list[dict[str, float]], start: int, env: str = "prod") -> None:
    names = {
        "requests": "message_count",
        "errors": "is_error",
        "total": "total_response_time",
        "target": "target_response_time",
        "request": "request_processing_latency",
        "response": "response_processing_latency",
    }
    records = [
        {
            "environment": env,
            "proxy": proxy,
            "timestamp": (start + i * 60) * 1000 + 5_000,  # a sample within minute i
            "metrics": {names[k]: v for k, v in minute.items()},
        }
        for i, minute in enumerate(minutes)
    ]
    requests.post(f"{stand.url}/_standin/apigee/stats", json=records, timeout=10).raise_for_status()


def test_time_range_is_gmt_minutes() -> None:
    assert time_range(T0, T0 + 3600 + 59) == "03/14/2025 14:00~03/14/2025 15:00"


def test_stats_round_trip_through_evidence(stand: Handle, client: ApigeeClient) -> None:
    minutes = scenario_minutes("target", baseline=60, incident=20)
    seed(stand, "orders-v1", minutes, T0)
    seed(stand, "other-proxy", scenario_minutes("calm", baseline=80, incident=0), T0)
    seed(stand, "orders-v1", minutes[:5], T0, env="test")
    analytics = ApigeeAnalytics(client, calls_per_minute=600)
    incident_start, end = T0 + 3600, T0 + 80 * 60
    raw = analytics.stats("prod", "orders-v1", select=SELECT, start=T0, end=end, time_unit="minute")
    parsed = parse_stats(raw, "orders-v1")
    assert parsed.problems == ()
    assert len(parsed.points) == 80 and parsed.points[0].minute == T0 * 1000
    assert [p.minute for p in parsed.points] == sorted(p.minute for p in parsed.points)  # type: ignore[type-var]
    first, last = parsed.points[0], parsed.points[-1]
    assert (first.requests, first.errors, first.total_ms, first.target_ms) == (600.0, 3.0, 250.0, 200.0)
    assert (last.total_ms, last.target_ms, last.request_ms, last.response_ms) == (2450.0, 2400.0, 20.0, 10.0)
    evidence = build_evidence(parsed, baseline_start=T0, incident_start=incident_start, incident_end=end)
    assert evidence.has_data and evidence.baseline.minutes == 60 and evidence.incident.minutes == 20
    assert evidence.baseline.total_ms == pytest.approx(250) and evidence.incident.target_ms == pytest.approx(
        2400
    )
    assert evidence.baseline.rpm == pytest.approx(600) and evidence.problems == ()

    # the request as Apigee documents it: one dimension, the filter, GMT range, ascending series
    calls = requests.get(f"{stand.url}/_standin/stats", timeout=10).json()["methods"]
    assert calls["apigee.organizations.environments.stats.get"] == 1


def test_stats_request_shape(client: ApigeeClient) -> None:
    seen: list[tuple[str, str, dict[str, Any]]] = []

    class Response:
        content = b'{"environments": []}'

        @staticmethod
        def json() -> Any:
            return {"environments": []}

    def fake_request(method: str, path: str, what: str, **kwargs: Any) -> Response:
        seen.append((method, path, kwargs))
        return Response()

    client._request = fake_request  # type: ignore[method-assign,assignment]
    ApigeeAnalytics(client).stats(
        "prod",
        "orders-v1",
        select=["sum(message_count)", "avg(total_response_time)"],
        start=T0,
        end=T0 + 600,
        time_unit="minute",
    )
    ((method, path, kwargs),) = seen
    assert method == "GET" and kwargs == {}
    assert path == (
        "/environments/prod/stats/apiproxy?select=sum%28message_count%29%2Cavg%28total_response_time%29"
        "&timeRange=03%2F14%2F2025%2014%3A00~03%2F14%2F2025%2014%3A10&timeUnit=minute"
        "&filter=%28apiproxy%20eq%20%27orders-v1%27%29&tsAscending=true"
    )
    with pytest.raises(InputError):
        ApigeeAnalytics(client).stats(
            "prod", "x') or (1", select=SELECT, start=T0, end=T0, time_unit="minute"
        )
    with pytest.raises(InputError):
        ApigeeAnalytics(client).stats("prod", "x", select=SELECT, start=T0, end=T0, time_unit="fortnight")


def test_analytics_has_its_own_rate_limit(client: ApigeeClient) -> None:
    waits: list[float] = []
    limiter = RateLimiter(90, sleep=waits.append)
    analytics = ApigeeAnalytics(client, limiter=limiter)
    assert analytics.limiter is limiter and analytics.limiter is not client.limiter
    assert ApigeeAnalytics(client).limiter.rate == pytest.approx(90 / 60)
    for _ in range(3):
        limiter.acquire()
    assert len(waits) == 2 and waits[0] > 0.5  # 1.5 calls a second, bursts of one


def test_deployed_bundle(stand: Handle, client: ApigeeClient) -> None:
    analytics = ApigeeAnalytics(client)
    assert analytics.deployed_bundle("prod", "orders-v1") is None  # no such proxy
    first = direct_bundle()
    second = direct_bundle(
        steps=["SA-1"], policies={"SA-1": '<SpikeArrest name="SA-1"><Rate>10ps</Rate></SpikeArrest>'}
    )
    r1 = client.import_bundle("orders-v1", first)
    assert analytics.deployed_bundle("prod", "orders-v1") is None  # imported, not deployed
    r2 = client.import_bundle("orders-v1", second)
    client.deploy("prod", "orders-v1", r1, service_account=SA)
    client.deploy("test", "orders-v1", r2, service_account=SA)
    in_prod = analytics.deployed_bundle("prod", "orders-v1")
    in_test = analytics.deployed_bundle("test", "orders-v1")
    assert in_prod == first and in_test == second
    assert zipfile.ZipFile(BytesIO(in_prod or b"")).namelist()[0].startswith("apiproxy/")
    assert parse_bundle(in_test or b"") != parse_bundle(in_prod or b"")
    client.undeploy("prod", "orders-v1", r1)
    assert analytics.deployed_bundle("prod", "orders-v1") is None
    assert analytics.deployed_bundle("nowhere", "orders-v1") is None  # unknown environment


def test_proxy_labels_tell_missing_from_unlabelled_from_owned(stand: Handle, client: ApigeeClient) -> None:
    analytics = ApigeeAnalytics(client)
    assert analytics.proxy_labels("orders-v1") is None  # no such proxy
    client.import_bundle("orders-v1", direct_bundle())
    assert analytics.proxy_labels("orders-v1") == {}  # hand-made: no labels
    requests.patch(
        f"{stand.url}/v1/organizations/{ORG}/apis/orders-v1",
        params={"updateMask": "labels"},
        json={"labels": {"gatehouse-owner": "gatehouse", "team": "shop"}},
        timeout=10,
    ).raise_for_status()
    assert analytics.proxy_labels("orders-v1") == {"gatehouse-owner": "gatehouse", "team": "shop"}
    with pytest.raises(InputError):
        analytics.proxy_labels("../x")
