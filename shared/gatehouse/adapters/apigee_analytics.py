"""The tickets job's Apigee reads: per-minute analytics (``StatsApi``) and the deployed bundle
(``BundleReader``), over the same :class:`~gatehouse.adapters.apigee.ApigeeClient` as registration.

The analytics API has its own, much smaller quota (about 100 requests a minute per organization)
than the management API (6,000), so stats calls first take a token from a separate limiter (90 a
minute by default) and then go through the client's session, limiter and retry policy. Retried
attempts are paced by the client's backoff, which honours ``Retry-After`` on a 429.

The stats query follows the documented form (api-facts A10): dimension ``apiproxy`` filtered to
one proxy, ``timeRange`` in GMT as ``MM/DD/YYYY HH:MM~MM/DD/YYYY HH:MM``, ``timeUnit`` and
``tsAscending=true``. The query string is encoded with ``%20`` for spaces, as in Google's examples,
rather than the ``+`` requests would use.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

from gatehouse.adapters.apigee import ApigeeClient
from gatehouse.adapters.http import RateLimiter, json_or_empty
from gatehouse.errors import InputError, NotFoundError, PermanentError

ANALYTICS_CALLS_PER_MINUTE = 90
_TIME_UNITS = frozenset({"second", "minute", "hour", "day", "week", "month"})
_NAME = re.compile(r"^[A-Za-z0-9._-]{1,255}$")  # Apigee proxy and environment names


def time_range(start: int, end: int) -> str:
    """Epoch seconds -> Apigee's ``MM/DD/YYYY HH:MM~MM/DD/YYYY HH:MM`` (GMT)."""
    fmt = "%m/%d/%Y %H:%M"
    return (
        f"{datetime.fromtimestamp(start, UTC).strftime(fmt)}~{datetime.fromtimestamp(end, UTC).strftime(fmt)}"
    )


class ApigeeAnalytics:
    """``StatsApi`` and ``BundleReader`` of one organization."""

    def __init__(
        self,
        client: ApigeeClient,
        *,
        calls_per_minute: int = ANALYTICS_CALLS_PER_MINUTE,
        limiter: RateLimiter | None = None,
    ) -> None:
        self.client = client
        # a small burst: a run's first few proxies need not wait, and the first minute still stays
        # under the ~100 requests/minute the analytics API allows (burst + calls_per_minute)
        self.limiter = limiter or RateLimiter(calls_per_minute, burst=min(5, max(1, 100 - calls_per_minute)))

    def stats(
        self, environment: str, proxy: str, *, select: Sequence[str], start: int, end: int, time_unit: str
    ) -> Mapping[str, Any]:
        _check_name("environment", environment)
        _check_name("proxy", proxy)
        if time_unit not in _TIME_UNITS:
            raise InputError(f"timeUnit {time_unit!r} is not one of {', '.join(sorted(_TIME_UNITS))}")
        if not select or end < start:
            raise InputError("stats needs at least one select expression and start <= end")
        query = urlencode(
            {
                "select": ",".join(select),
                "timeRange": time_range(start, end),
                "timeUnit": time_unit,
                "filter": f"(apiproxy eq '{proxy}')",
                "tsAscending": "true",
            },
            quote_via=quote,
        )
        self.limiter.acquire()
        response = self.client._request(
            "GET",
            f"/environments/{_seg(environment)}/stats/apiproxy?{query}",
            f"stats of {proxy} in {environment}",
        )
        doc = json_or_empty(response)
        if not isinstance(doc, Mapping):
            raise PermanentError(f"stats of {proxy} in {environment}: expected a JSON object")
        return doc

    def stats_grouped(
        self,
        environment: str,
        *,
        dimensions: Sequence[str],
        select: Sequence[str],
        start: int,
        end: int,
        proxies: Sequence[str],
    ) -> Mapping[str, Any]:
        """Totals (no ``timeUnit``) of several proxies at once, grouped by ``dimensions`` (the first
        being ``apiproxy``), filtered with ``apiproxy in (...)``: the rollout gate's one call per
        environment and window, instead of one per proxy, keeps it inside the analytics quota."""
        _check_name("environment", environment)
        for proxy in proxies:
            _check_name("proxy", proxy)
        if not select or not proxies or end < start or not dimensions or dimensions[0] != "apiproxy":
            raise InputError(
                "grouped stats need apiproxy first, select expressions, proxies and start <= end"
            )
        for dim in dimensions:
            _check_name("dimension", dim)
        names = ",".join(f"'{p}'" for p in proxies)
        query = urlencode(
            {
                "select": ",".join(select),
                "timeRange": time_range(start, end),
                "filter": f"(apiproxy in {names})",
            },
            quote_via=quote,
        )
        self.limiter.acquire()
        response = self.client._request(
            "GET",
            f"/environments/{_seg(environment)}/stats/{','.join(dimensions)}?{query}",
            f"stats of {len(proxies)} proxies in {environment}",
        )
        doc = json_or_empty(response)
        if not isinstance(doc, Mapping):
            raise PermanentError(f"stats in {environment}: expected a JSON object")
        return doc

    def proxy_labels(self, proxy: str) -> Mapping[str, str] | None:
        """``GET .../apis/{proxy}``: its labels (registration writes its owner id there), None when
        the organization has no such proxy."""
        _check_name("proxy", proxy)
        try:
            doc = json_or_empty(self.client._request("GET", f"/apis/{_seg(proxy)}", f"proxy {proxy}"))
        except NotFoundError:
            return None
        labels = doc.get("labels") if isinstance(doc, Mapping) else None
        if not isinstance(labels, Mapping):
            return {}
        return {str(k): str(v) for k, v in labels.items() if isinstance(v, str)}

    def deployed_bundle(self, environment: str, proxy: str) -> bytes | None:
        _check_name("environment", environment)
        _check_name("proxy", proxy)
        try:
            listing = json_or_empty(
                self.client._request(
                    "GET",
                    f"/environments/{_seg(environment)}/apis/{_seg(proxy)}/deployments",
                    f"deployments of {proxy} in {environment}",
                )
            )
        except NotFoundError:
            return None  # no such proxy (or environment): nothing is deployed
        revisions = [
            str(d.get("revision"))
            for d in (listing.get("deployments") or [] if isinstance(listing, Mapping) else [])
            if isinstance(d, Mapping)
            and d.get("environment", environment) == environment
            and d.get("revision")
        ]
        if not revisions:
            return None
        revision = max(revisions, key=lambda r: int(r) if r.isdigit() else -1)  # one, unless mid-rollout
        try:
            response = self.client._request(
                "GET",
                f"/apis/{_seg(proxy)}/revisions/{_seg(revision)}",
                f"bundle of {proxy} r{revision}",
                params={"format": "bundle"},
            )
        except NotFoundError:
            return None  # undeployed and deleted since the listing
        return response.content


def _seg(value: str) -> str:
    return quote(value, safe="")


def _check_name(what: str, value: str) -> None:
    # the proxy goes into a filter expression: only Apigee's own name characters may
    if not _NAME.match(value):
        raise InputError(f"invalid Apigee {what} name {value!r}")
