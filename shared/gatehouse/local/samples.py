"""Sample data for the local stack: a fleet of Cloud Run services, rotation targets declared on
Secret Manager secrets, Apigee analytics around a latency incident, and the Cloud Monitoring
notifications such an incident sends. Used by ``gatehouse demo`` and the end-to-end tests."""

from __future__ import annotations

import io
import json
import time
import zipfile
from typing import Any

import requests

SAMPLE_FLEET: list[dict[str, Any]] = [
    {
        "name": "orders",
        "labels": {"apigee-expose": "true"},
        # the service answers its OpenAPI spec at this path (serve_spec), which goes into the bundle
        "annotations": {"gatehouse.dev/base-path": "/v1/orders", "gatehouse.dev/openapi": "/openapi.yaml"},
    },
    {
        "name": "payments",
        "labels": {"apigee-expose": "true", "apigee-profile": "jwt"},
        "annotations": {"gatehouse.dev/jwt-audience": "payments-api"},
    },
    {"name": "inventory", "labels": {"apigee-expose": "true", "apigee-profile": "oauth2"}, "annotations": {}},
    {
        "name": "status-page",
        "labels": {"apigee-expose": "true", "apigee-profile": "public"},
        "annotations": {},
    },
    {
        "name": "catalog",
        "labels": {"apigee-expose": "true"},
        "annotations": {
            "gatehouse.dev/rate-limit": "50ps",
            "gatehouse.dev/quota": "1000/hour",
            "gatehouse.dev/environments": "test,prod",
        },
    },
    {"name": "batch-worker", "labels": {"team": "data"}, "annotations": {}},
]


def serve_fleet_specs(state: dict[str, Any], services: list[dict[str, Any]]) -> None:
    """Make every sample service with a service-path spec answer it (before it is deployed)."""
    for service in services:
        path = service["annotations"].get("gatehouse.dev/openapi", "")
        if path.startswith("/"):
            serve_spec(state, service["name"], path, SAMPLE_SPEC)


def fleet(count: int) -> list[dict[str, Any]]:
    services = SAMPLE_FLEET[:count]
    services += [
        {"name": f"svc-{i:03d}", "labels": {"apigee-expose": "true"}, "annotations": {}}
        for i in range(len(services), count)
    ]
    return services


# -- rotation --------------------------------------------------------------------------------------

ROTATION_TARGETS: list[dict[str, Any]] = [
    {"secret": "orders-client-key", "kind": "sa-key", "account": "orders-client"},
    {
        "secret": "billing-sync-key",
        "kind": "sa-key",
        "account": "billing-sync",
        "annotations": {"gatehouse-disable-after": "3d", "gatehouse-delete-after": "14d"},
    },
    {
        "secret": "partner-webhook-token",
        "kind": "generated",
        "annotations": {"gatehouse-length": "48", "gatehouse-alphabet": "base64url"},
    },
]


def seed_rotation_targets(state: dict[str, Any], targets: list[dict[str, Any]] | None = None) -> list[str]:
    """Create the service accounts (IAM stand-in) and the secrets that declare the targets
    (Secret Manager stand-in, through the official client); returns the secret names."""
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import secretmanager

    client = secretmanager.SecretManagerServiceClient(
        credentials=AnonymousCredentials(),
        transport="rest",
        client_options=ClientOptions(api_endpoint=state["secretmanager"]),
    )
    project = state["project"]
    names = []
    for target in targets or ROTATION_TARGETS:
        annotations = dict(target.get("annotations", {}))
        if target["kind"] == "sa-key":
            requests.post(
                f"{state['iam']}/v1/projects/{project}/serviceAccounts",
                timeout=10,
                json={"accountId": target["account"]},
            ).raise_for_status()
            annotations["gatehouse-service-account"] = (
                f"{target['account']}@{project}.iam.gserviceaccount.com"
            )
        secret = {
            "replication": {"automatic": {}},
            "labels": {"gatehouse-rotate": target["kind"]},
            "annotations": annotations,
            # SECRET_ROTATE notifications reach on_command through the commands topic
            "topics": [{"name": state["topics"]["commands"]}],
        }
        created = client.create_secret(
            request={"parent": f"projects/{project}", "secret_id": target["secret"], "secret": secret}
        )
        names.append(created.name)
    return names


# -- tickets ---------------------------------------------------------------------------------------

_METRIC_NAMES = {
    "requests": "message_count",
    "errors": "is_error",
    "total": "total_response_time",
    "target": "target_response_time",
    "request": "request_processing_latency",
    "response": "response_processing_latency",
}


def scenario(kind: str, *, baseline: int = 60, incident: int = 20) -> list[dict[str, float]]:
    """Per-minute analytics: a calm baseline, then an incident that is target-, proxy- or
    traffic-bound."""
    calm = {
        "requests": 600.0,
        "errors": 3.0,
        "total": 250.0,
        "target": 200.0,
        "request": 20.0,
        "response": 10.0,
    }
    slow = dict(calm)
    if kind == "target":
        slow.update(total=2450.0, target=2400.0)
    elif kind == "proxy":
        slow.update(total=1900.0, target=210.0, request=1500.0)
    elif kind == "traffic":
        slow.update(requests=3000.0, total=1200.0, target=1000.0)
    elif kind != "calm":
        raise ValueError(f"unknown scenario {kind!r}")
    return [calm] * baseline + [slow] * incident


def seed_stats(
    state: dict[str, Any],
    environment: str,
    proxy: str,
    minutes: list[dict[str, float]],
    end: int | None = None,
) -> int:
    """Seed the Apigee stand-in's analytics with one sample per minute ending at ``end``; returns
    the epoch second the incident part started (20 minutes before the end)."""
    end = end or int(time.time()) // 60 * 60
    start = end - len(minutes) * 60
    records = [
        {
            "environment": environment,
            "proxy": proxy,
            "timestamp": (start + i * 60) * 1000 + 5_000,
            "metrics": {_METRIC_NAMES[k]: v for k, v in minute.items()},
        }
        for i, minute in enumerate(minutes)
    ]
    requests.post(f"{state['apigee']}/_standin/apigee/stats", json=records, timeout=30).raise_for_status()
    slow = next((i for i, m in enumerate(minutes) if m != minutes[0]), len(minutes))
    return start + slow * 60


def seed_proxy(state: dict[str, Any], proxy: str, *, owner: str | None = None) -> None:
    """Make API proxy ``proxy`` exist in the Apigee stand-in, labelled with ``owner`` (default: this
    stack's owner id, as registration labels what it creates): the tickets job tickets only proxies
    it looks after. A minimal bundle is imported when the proxy is missing; nothing is deployed."""
    base = f"{state['apigee']}/v1/organizations/{state['organization']}/apis"
    if requests.get(f"{base}/{proxy}", timeout=30).status_code == 404:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr(f"apiproxy/{proxy}.xml", f'<APIProxy name="{proxy}"/>')
            archive.writestr(
                "apiproxy/proxies/default.xml",
                f'<ProxyEndpoint name="default"><HTTPProxyConnection><BasePath>/{proxy}</BasePath>'
                '</HTTPProxyConnection><RouteRule name="noroute"/></ProxyEndpoint>',
            )
        requests.post(
            base,
            params={"name": proxy, "action": "import"},
            files={"file": (f"{proxy}.zip", buffer.getvalue(), "application/zip")},  # as apis.create takes it
            timeout=30,
        ).raise_for_status()
    requests.patch(
        f"{base}/{proxy}",
        params={"updateMask": "labels"},
        json={"labels": {"gatehouse-owner": owner or state["owner_id"]}},
        timeout=30,
    ).raise_for_status()


def incident(
    state: dict[str, Any],
    *,
    incident_id: str,
    proxy: str,
    environment: str,
    started_at: int,
    family: str = "proxy",
    status: str = "open",
    ended_at: int | None = None,
) -> dict[str, Any]:
    """A Cloud Monitoring incident notification (schema 1.2) on an Apigee latency metric."""
    metric = f"apigee.googleapis.com/{family}/latencies"
    project = state["project"]
    return {
        "version": "1.2",
        "incident": {
            "incident_id": incident_id,
            "scoping_project_id": project,
            "scoping_project_number": int(state["project_number"]),
            "url": f"https://console.cloud.google.com/monitoring/alerting/incidents/{incident_id}?project={project}",
            "started_at": started_at,
            "ended_at": ended_at,
            "state": status,
            "summary": f"{family.title()} latencies for {proxy} is above the threshold of 2000.000.",
            "apigee_url": f"https://apigee.google.com/platform/{state['organization']}/proxies/{proxy}/overview",
            "observed_value": "2450.0",
            "threshold_value": "2000",
            "severity": "Warning",
            "resource": {
                "type": "apigee.googleapis.com/Proxy",
                "labels": {
                    "org": state["organization"],
                    "env": environment,
                    "location": state["region"],
                    "proxy_name": proxy,
                },
            },
            "resource_type_display_name": "Apigee Proxy",
            "metric": {"type": metric, "displayName": "Latencies", "labels": {}},
            "policy_name": f"Apigee {family} p95 latency > 2s",
            "condition_name": f"{family} p95 latency",
            "condition": {
                "name": f"projects/{project}/alertPolicies/1234/conditions/5678",
                "displayName": f"{family} p95 latency",
                "conditionThreshold": {
                    "filter": f'resource.type="apigee.googleapis.com/Proxy" AND metric.type="{metric}"',
                    "comparison": "COMPARISON_GT",
                    "thresholdValue": 2000,
                    "duration": "300s",
                },
            },
        },
    }


def test_notification() -> dict[str, Any]:
    """What the Cloud Monitoring console sends when someone clicks "send test notification"."""
    return {
        "version": "test",
        "incident": {
            "incident_id": "12345",
            "scoping_project_id": "12345",
            "state": "OPEN",
            "summary": "Test incident",
            "started_at": 0,
        },
    }


def uptime_incident(state: dict[str, Any]) -> dict[str, Any]:
    """An incident of another metric: recognised and ignored with a reason."""
    return {
        "version": "1.2",
        "incident": {
            "incident_id": "0.uptime1",
            "scoping_project_id": state["project"],
            "state": "open",
            "started_at": int(time.time()) - 600,
            "summary": "Uptime check failed",
            "resource": {"type": "uptime_url", "labels": {"host": "status.example.com"}},
            "metric": {"type": "monitoring.googleapis.com/uptime_check/check_passed"},
        },
    }


def publish(state: dict[str, Any], topic: str, payloads: list[Any]) -> None:
    """Publish JSON payloads (or raw bytes) to a topic of the stack's Pub/Sub emulator."""
    from google.cloud.pubsub_v1 import PublisherClient

    publisher = PublisherClient()
    futures = [
        publisher.publish(state["topics"][topic], p if isinstance(p, bytes) else json.dumps(p).encode())
        for p in payloads
    ]
    for future in futures:
        future.result(timeout=30)


# -- OpenAPI specs ---------------------------------------------------------------------------------

SAMPLE_SPEC = """openapi: 3.0.3
info:
  title: Orders
  version: "1.0"
paths:
  /orders:
    get:
      responses:
        "200": {description: the orders}
    post:
      responses:
        "201": {description: created}
  /orders/{orderId}:
    parameters:
      - {name: orderId, in: path, required: true, schema: {type: string}}
    get:
      responses:
        "200": {description: one order}
"""


def serve_spec(
    state: dict[str, Any], service: str, path: str, body: str, content_type: str = "application/yaml"
) -> None:
    """Make sample service ``service`` (its short name) answer ``path`` with ``body``: the Cloud Run
    stand-in answers the service's run.app traffic on 127.0.0.1, to callers holding run.invoker."""
    name = f"projects/{state['project']}/locations/{state['region']}/services/{service}"
    requests.post(
        f"{state['cloudrun']}/_standin/cloudrun/content",
        json={"service": name, "path": path, "body": body, "content_type": content_type},
        timeout=10,
    ).raise_for_status()


def upload_spec(state: dict[str, Any], bucket: str, name: str, body: bytes) -> str:
    """Put a spec in the stack's Cloud Storage emulator (creating the bucket); returns its gs:// URI."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage  # type: ignore[attr-defined,unused-ignore]

    client = storage.Client(
        project=state["project"],
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": state["storage"]},
    )
    found = client.lookup_bucket(bucket)
    target = found if found is not None else client.create_bucket(bucket)
    target.blob(name).upload_from_string(body, content_type="application/octet-stream")
    return f"gs://{bucket}/{name}"
