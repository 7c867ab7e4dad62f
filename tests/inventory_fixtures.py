"""A fleet snapshot for the inventory tests: plain values, some of them hostile.

``fleet(n, hostile=True)`` builds what :func:`gatehouse.inventory.gather.gather` would have read:
n Cloud Run services (v2 JSON), their proxies and deployments, outcomes, rotation targets with
versions and keys, and tickets with an evidence table. With ``hostile`` the values a deployer or an
alert controls carry markup, quotes, a 10 kB annotation and right-to-left overrides.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from gatehouse import bundle as bundles
from gatehouse import exposure
from gatehouse.inventory.model import Context, Snapshot, TicketInfo
from gatehouse.ports import Deployment, Outcome, ProxyInfo
from gatehouse.profiles import load_profiles
from gatehouse.rotation.ports import KeyInfo, SecretInfo, VersionInfo, VersionState

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
PROJECT, REGION, OWNER = "shop-prod", "europe-west1", "gatehouse-test"
PROXY_SA = f"apigee-proxy@{PROJECT}.iam.gserviceaccount.com"
SCRIPT = "<script>alert(1)</script>"
IMG = '<img src=x onerror="alert(2)">'
RLO = "\u202egnp.exe"
QUOTES = 'it\'s "quoted" & <b>bold</b>'


def context() -> Context:
    return Context(
        organization="shop-org",
        owner_id=OWNER,
        proxy_service_account=PROXY_SA,
        profiles=load_profiles(None),
        default_environments=("test",),
    )


def service_doc(
    name: str,
    *,
    expose: bool = True,
    annotations: dict[str, str] | None = None,
    account: str | None = None,
    env: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "name": f"projects/{PROJECT}/locations/{REGION}/services/{name}",
        "uri": f"https://{name}-abc123-ew.a.run.app",
        "labels": {"apigee-expose": "true"} if expose else {"team": "data"},
        "annotations": annotations or {},
        "template": {
            "serviceAccount": account or f"{name}@{PROJECT}.iam.gserviceaccount.com",
            "containers": [{"image": f"europe-docker.pkg.dev/{PROJECT}/apps/{name}:1", "env": env or []}],
        },
        "terminalCondition": {"type": "Ready", "state": "CONDITION_SUCCEEDED"},
        "conditions": [{"type": "Ready", "state": "CONDITION_SUCCEEDED"}],
    }


def _hash(doc: dict[str, Any]) -> tuple[str, str]:
    ctx = context()
    service = exposure.RunService.from_json(doc, project=PROJECT, region=REGION)
    spec = exposure.desired(service, ctx.profiles, default_environments=ctx.default_environments)
    assert isinstance(spec, exposure.ProxySpec)
    rendered = bundles.render(spec, ctx.profiles.get(spec.profile), owner_id=OWNER)
    return spec.proxy_name, rendered.content_hash[:48]


def _labels(name: str, content_hash: str, revision: int = 1) -> dict[str, str]:
    return {
        "gatehouse-owner": OWNER,
        "gatehouse-hash": content_hash,
        "gatehouse-revision": str(revision),
        "gatehouse-project": PROJECT,
        "gatehouse-region": REGION,
        "gatehouse-service": name,
    }


def ticket_body(values: list[int]) -> str:
    rows = []
    start = NOW - timedelta(minutes=len(values))
    for i, v in enumerate(values):
        minute = (start + timedelta(minutes=i)).strftime("%Y-%m-%d %H:%M")
        window = "incident" if i >= len(values) // 2 else "baseline"
        rows.append(f"| {minute} UTC | {window} | 1,200 | {v:,} ms | {v // 2:,} ms | 0 |")
    return (
        "<!-- gatehouse -->\n| minute | window | requests | total | target | errors |\n"
        "|---|---|---:|---:|---:|---:|\n" + "\n".join(rows)
    )


def fleet(n: int = 12, *, hostile: bool = True) -> Snapshot:
    """``n`` services (n >= 6): problems on the first five, the rest clean."""
    snap = Snapshot(read_at=NOW)
    names = [f"svc-{i:03d}" for i in range(n)]
    for i, name in enumerate(names):
        annotations: dict[str, str] = {}
        env: list[dict[str, Any]] = []
        if i == 0:
            env = [
                {
                    "name": "DB_PASSWORD",
                    "valueSource": {"secretKeyRef": {"secret": "db-password", "version": "3"}},
                }
            ]
        if hostile and i == 1:
            annotations = {"gatehouse.dev/base-path": "/bad path " + SCRIPT + QUOTES}  # invalid contract
        if hostile and i == 6:
            annotations = {"note": "x" * 10_240, "quoted": QUOTES, "rlo": RLO}
        doc = service_doc(name, expose=(i != 5), annotations=annotations, env=env)
        snap.services.append((PROJECT, REGION, doc))
        if i in (1, 5):
            continue
        proxy, content_hash = _hash(doc)
        if i == 2:  # drift: someone changed the bundle
            content_hash = "0" * 48
        labels = _labels(name, content_hash)
        if i == 3:  # a hand-made proxy took the name
            labels = {"team": "legacy " + IMG}
        snap.proxies.append(ProxyInfo(proxy, labels, (1,)))
        snap.deployments.append(Deployment("test", f"organizations/shop-org/apis/{proxy}", 1))
        if labels.get("gatehouse-owner") == OWNER:
            snap.invokers[f"projects/{PROJECT}/locations/{REGION}/services/{name}"] = i != 4
        result, reason = "unchanged", ""
        if i == 0:
            result, reason = "error", "Apigee said: " + (SCRIPT + IMG + RLO if hostile else "boom")
        snap.outcomes.append(
            Outcome(
                f"projects/{PROJECT}/locations/{REGION}/services/{name}",
                result,
                reason,
                proxy,
                1,
                "2026-12-06T11:00:00Z",
                f"cid{i:03d}",
            )
        )
    # an orphan: ours, for a service that is gone
    snap.proxies.append(ProxyInfo("gone-1234abcd", _labels("gone", "f" * 48), (1, 2)))
    snap.deployments.append(Deployment("test", "organizations/shop-org/apis/gone-1234abcd", 2))
    # rotation targets: a generated secret read by svc-000, an sa-key of svc-007's account
    snap.secrets = [
        SecretInfo(
            f"projects/{PROJECT}/secrets/db-password",
            {"gatehouse-rotate": "generated"},
            {"gatehouse-rotation-period": "30d"},
            {"current": 3},
            "e1",
            NOW - timedelta(days=200),
        ),
        SecretInfo(
            f"projects/{PROJECT}/secrets/svc-007-key",
            {"gatehouse-rotate": "sa-key"},
            {"gatehouse-service-account": f"svc-007@{PROJECT}.iam.gserviceaccount.com"},
            {"current": 1},
            "e2",
            NOW - timedelta(days=20),
        ),
    ]
    snap.versions = {
        f"projects/{PROJECT}/secrets/db-password": [
            VersionInfo(3, VersionState.ENABLED, NOW - timedelta(days=45), "v3"),
            VersionInfo(2, VersionState.DISABLED, NOW - timedelta(days=80), "v2"),
        ],
        f"projects/{PROJECT}/secrets/svc-007-key": [
            VersionInfo(1, VersionState.ENABLED, NOW - timedelta(days=20), "v1")
        ],
    }
    snap.keys = {
        f"svc-007@{PROJECT}.iam.gserviceaccount.com": [
            KeyInfo("k" * 40, NOW - timedelta(days=20), None, False),
            KeyInfo("j" * 40, NOW - timedelta(days=110), None, True),
        ]
    }
    proxy0 = _hash(snap.services[0][2])[0]
    title = f"[gatehouse] {proxy0} (test) is slow, target-bound: " + (
        SCRIPT if hostile else "add a load balancer"
    )
    snap.tickets = [
        TicketInfo(
            "7",
            title,
            "open",
            "https://github.example/acme/routing/issues/7",
            ("gatehouse",),
            ticket_body([120, 130, 125, 128, 900, 1500, 1400, 1300]),
        ),
        TicketInfo("8", "[gatehouse] " + IMG, "open", "javascript:alert(3)", ("gatehouse",), ""),
    ]
    snap.calls = {"run.services.list": 1, "apigee.apis.list": 1}
    return snap
