"""The rollout's reads over the Apigee stand-in: one grouped stats call per environment and window,
parsed into per-proxy windows by status class; and the gate judging them."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import requests

from gatehouse.adapters.apigee import ApigeeClient
from gatehouse.adapters.apigee_analytics import ApigeeAnalytics
from gatehouse.errors import InputError
from gatehouse.local.standins import apigee
from gatehouse.local.standins.server import Handle
from gatehouse.rollouts import gate

ORG = "shop-org"


@pytest.fixture
def stand() -> Iterator[Handle]:
    handle = apigee.start(org=ORG, envs=("prod", "test"), deploy_delay_ms=0)
    yield handle
    handle.stop()


def seed(stand: Handle, proxy: str, code: str, count: int, at_ms: int, *, ms: float = 100.0) -> None:
    records = [
        {
            "environment": "prod",
            "timestamp": at_ms,
            "dimensions": {"apiproxy": proxy, "response_status_code": code},
            "metrics": {"total_response_time": ms, "target_response_time": ms - 30},
        }
        for _ in range(count)
    ]
    requests.post(f"{stand.url}/_standin/apigee/stats", json=records, timeout=10).raise_for_status()


def test_grouped_stats_give_each_proxy_its_window_and_the_gate_its_verdict(stand: Handle) -> None:
    analytics = ApigeeAnalytics(
        ApigeeClient(ORG, endpoint=stand.url, anonymous=True, calls_per_minute=60_000, retry_max_wait=1.0)
    )
    now = int(time.time()) // 60 * 60
    before, after = (now - 1200, now - 600), (now - 540, now)
    for proxy in ("orders", "billing"):
        seed(stand, proxy, "200", 60, (before[0] + 60) * 1000)
        seed(stand, proxy, "200", 60, (after[0] + 60) * 1000)
    seed(stand, "orders", "401", 30, (after[0] + 120) * 1000)

    def windows(span: tuple[int, int]) -> dict[str, gate.Window]:
        doc = analytics.stats_grouped(
            "prod",
            dimensions=gate.STATS_DIMENSIONS,
            select=gate.STATS_SELECT,
            start=span[0],
            end=span[1],
            proxies=["orders", "billing", "quiet"],
        )
        found, problems = gate.windows_from_stats(doc, ["orders", "billing", "quiet"])
        assert problems == []
        return found

    old, new = windows(before), windows(after)
    assert (old["orders"].requests, new["orders"].requests, new["orders"].auth_errors) == (60, 90, 30)
    assert new["billing"].auth_errors == 0 and new["quiet"] == gate.Window()
    assert gate.judge(old["orders"], new["orders"]).result == "fail"
    assert gate.judge(old["billing"], new["billing"]).result == "pass"
    assert gate.judge(old["quiet"], new["quiet"]).result == "inconclusive"


def test_grouped_stats_refuse_names_that_would_change_the_filter(stand: Handle) -> None:
    analytics = ApigeeAnalytics(ApigeeClient(ORG, endpoint=stand.url, anonymous=True))
    for proxies, dims in (
        (["a') or (apiproxy eq 'b"], gate.STATS_DIMENSIONS),
        (["a"], ("response_status_code",)),
    ):
        with pytest.raises(InputError):
            analytics.stats_grouped(
                "prod", dimensions=dims, select=gate.STATS_SELECT, start=0, end=60, proxies=proxies
            )
