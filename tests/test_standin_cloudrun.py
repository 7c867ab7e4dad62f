"""The Cloud Run Admin API v2 stand-in through the official client (REST transport), and its audit
log publishing to the real Pub/Sub emulator."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from google.api_core import exceptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import pubsub_v1, run_v2
from google.iam.v1 import policy_pb2

from gatehouse.local import processes
from gatehouse.local.standins import cloudrun
from gatehouse.local.standins.server import Handle

PROJECT = "my-proj"
PARENT = f"projects/{PROJECT}/locations/europe-west1"


def client_for(handle: Handle) -> run_v2.ServicesClient:
    return run_v2.ServicesClient(
        transport="rest",
        client_options={"api_endpoint": handle.url},
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
    )


def service(image: str = "europe-docker.pkg.dev/my-proj/apps/orders:1", **labels: str) -> run_v2.Service:
    return run_v2.Service(
        labels=labels,
        ingress=run_v2.IngressTraffic.INGRESS_TRAFFIC_ALL,
        template=run_v2.RevisionTemplate(containers=[run_v2.Container(image=image)]),
    )


@pytest.fixture
def stand() -> Iterator[Handle]:
    handle = cloudrun.start(project_numbers={PROJECT: "123456789012"}, check_fields=True)
    yield handle
    handle.stop()


@pytest.fixture
def client(stand: Handle) -> Iterator[run_v2.ServicesClient]:
    client = client_for(stand)
    yield client
    client.transport.close()


def test_create_get_and_output_fields(client: run_v2.ServicesClient) -> None:
    operation = client.create_service(parent=PARENT, service_id="orders", service=service(team="payments"))
    created = operation.result(timeout=10)
    assert isinstance(operation.metadata, run_v2.Service)  # typed metadata parsed by the client
    name = f"{PARENT}/services/orders"
    assert created.name == name
    assert created.generation == 1 and created.observed_generation == 1
    assert created.uid and created.etag and not created.reconciling
    assert created.terminal_condition.type_ == "Ready"
    assert created.terminal_condition.state == run_v2.Condition.State.CONDITION_SUCCEEDED
    assert created.ingress == run_v2.IngressTraffic.INGRESS_TRAFFIC_ALL
    assert created.uri.startswith("https://orders-") and created.uri.endswith("-ew.a.run.app")
    assert "https://orders-123456789012.europe-west1.run.app" in created.urls
    assert created.latest_ready_revision == created.latest_created_revision
    assert created.latest_created_revision.startswith(f"{name}/revisions/orders-00001-")
    assert created.creator == created.last_modifier
    assert created.traffic_statuses[0].percent == 100

    fetched = client.get_service(name=name)
    assert fetched.uid == created.uid and dict(fetched.labels) == {"team": "payments"}
    with pytest.raises(exceptions.NotFound):
        client.get_service(name=f"{PARENT}/services/missing")
    with pytest.raises(exceptions.Conflict) as exc:
        client.create_service(parent=PARENT, service_id="orders", service=service()).result()
    assert exc.value.response.json()["error"]["status"] == "ALREADY_EXISTS"


def test_invalid_requests_are_rejected(client: run_v2.ServicesClient) -> None:
    with pytest.raises(exceptions.BadRequest):
        client.create_service(parent=PARENT, service_id="Bad_Name", service=service()).result()
    with pytest.raises(exceptions.BadRequest):  # a template needs a container image
        client.create_service(parent=PARENT, service_id="empty", service=run_v2.Service()).result()
    with pytest.raises(exceptions.BadRequest):
        client.create_service(parent=PARENT, service_id="labels", service=service(Team="x")).result()
    with pytest.raises(exceptions.BadRequest):
        client.list_services(parent=f"projects/{PROJECT}/locations/-")


def test_list_pagination_newest_first(client: run_v2.ServicesClient) -> None:
    for i in range(5):
        client.create_service(parent=PARENT, service_id=f"svc-{i}", service=service()).result()
    client.create_service(
        parent=f"projects/{PROJECT}/locations/us-central1", service_id="elsewhere", service=service()
    ).result()
    pager = client.list_services(request={"parent": PARENT, "page_size": 2})
    pages = [[s.name.rsplit("/", 1)[1] for s in page.services] for page in pager.pages]
    assert pages == [["svc-4", "svc-3"], ["svc-2", "svc-1"], ["svc-0"]]


def test_update_generation_revisions_and_masks(client: run_v2.ServicesClient) -> None:
    name = f"{PARENT}/services/orders"
    created = client.create_service(parent=PARENT, service_id="orders", service=service(team="a")).result()
    # read-modify-write of a label: new generation, same revision (template unchanged)
    current = client.get_service(name=name)
    current.labels["gatehouse"] = "expose"
    labelled = client.update_service(service=current).result(timeout=10)
    assert labelled.generation == 2 and labelled.latest_created_revision == created.latest_created_revision
    assert dict(labelled.labels) == {"team": "a", "gatehouse": "expose"}
    # a new image makes a new revision (its old name belongs to the old template: cleared, as a
    # client that wants Cloud Run to name the new revision sends it)
    labelled.template.containers[0].image = "europe-docker.pkg.dev/my-proj/apps/orders:2"
    labelled.template.revision = ""
    rolled = client.update_service(service=labelled).result()
    assert rolled.generation == 3 and "/revisions/orders-00003-" in rolled.latest_created_revision
    # update mask: only labels change, the template stays
    masked = client.update_service(
        service=run_v2.Service(name=name, labels={"only": "this"}), update_mask={"paths": ["labels"]}
    ).result()
    assert dict(masked.labels) == {"only": "this"}
    assert masked.template.containers[0].image.endswith("orders:2")
    # stale etag in the body
    with pytest.raises(exceptions.Conflict):
        client.update_service(service=labelled).result()
    missing = run_v2.Service(name=f"{PARENT}/services/missing", template=service().template)
    with pytest.raises(exceptions.NotFound):
        client.update_service(service=missing).result()
    upserted = client.update_service(request={"service": missing, "allow_missing": True}).result()
    assert upserted.generation == 1


def test_a_reused_revision_name_is_refused_apart_from_a_stale_etag(client: run_v2.ServicesClient) -> None:
    name = f"{PARENT}/services/orders"
    named = service()
    named.template.revision = "orders-v1"  # gcloud and the console always name the revision
    created = client.create_service(parent=PARENT, service_id="orders", service=named).result()
    assert created.latest_created_revision == f"{name}/revisions/orders-v1"
    current = client.get_service(name=name)
    current.template.containers[0].image = "europe-docker.pkg.dev/my-proj/apps/orders:2"
    with pytest.raises(exceptions.Conflict) as reused:  # the same name, another template
        client.update_service(service=current).result()
    assert reused.value.response.json()["error"]["status"] == "ALREADY_EXISTS"
    assert client.get_service(name=name).template.containers[0].image.endswith("orders:1")
    # the name of an OLDER revision is refused too, not only the current one
    current.template.revision = "orders-v2"
    second = client.update_service(service=current).result()
    assert second.latest_created_revision == f"{name}/revisions/orders-v2"
    second.template.revision = "orders-v1"
    second.template.containers[0].image = "europe-docker.pkg.dev/my-proj/apps/orders:3"
    with pytest.raises(exceptions.Conflict) as older:
        client.update_service(service=second).result()
    assert older.value.response.json()["error"]["status"] == "ALREADY_EXISTS"
    # the same name with the same template is no change; a label change keeps the revision
    unchanged = client.get_service(name=name)
    unchanged.labels["team"] = "a"
    relabelled = client.update_service(service=unchanged).result()
    assert relabelled.latest_created_revision == f"{name}/revisions/orders-v2"
    # a stale etag is a concurrent modification: also 409, but ABORTED (told apart by status)
    current.template.revision = ""
    with pytest.raises(exceptions.Conflict) as stale:
        client.update_service(service=current).result()
    assert stale.value.response.json()["error"]["status"] == "ABORTED"
    # cleared name, fresh etag: Cloud Run names the new revision
    fresh = client.get_service(name=name)
    fresh.template.containers[0].image = "europe-docker.pkg.dev/my-proj/apps/orders:4"
    fresh.template.revision = ""
    rolled = client.update_service(service=fresh).result()
    assert "/revisions/orders-00004-" in rolled.latest_created_revision


def test_iam_policy_read_modify_write_with_etag(client: run_v2.ServicesClient) -> None:
    name = client.create_service(parent=PARENT, service_id="orders", service=service()).result().name
    policy = client.get_iam_policy(request={"resource": name})
    assert not policy.bindings and policy.etag
    policy.bindings.append(
        policy_pb2.Binding(
            role="roles/run.invoker", members=["serviceAccount:apigee-proxy@my-proj.iam.gserviceaccount.com"]
        )
    )
    stored = client.set_iam_policy(request={"resource": name, "policy": policy})
    assert stored.etag != policy.etag
    assert [
        (b.role, list(b.members)) for b in client.get_iam_policy(request={"resource": name}).bindings
    ] == [("roles/run.invoker", ["serviceAccount:apigee-proxy@my-proj.iam.gserviceaccount.com"])]
    # the etag read before the first write is stale now: 409 ABORTED. Over REST, api_core maps
    # exceptions by HTTP status, so a 409 is a Conflict (Aborted is only raised over gRPC).
    with pytest.raises(exceptions.Conflict) as exc:
        client.set_iam_policy(request={"resource": name, "policy": policy})
    assert exc.value.response.json()["error"]["status"] == "ABORTED"
    assert not isinstance(exc.value, exceptions.Aborted)
    tested = client.test_iam_permissions(request={"resource": name, "permissions": ["run.services.get"]})
    assert list(tested.permissions) == ["run.services.get"]
    bad = policy_pb2.Policy(bindings=[policy_pb2.Binding(role="roles/run.invoker", members=["nobody"])])
    with pytest.raises(exceptions.BadRequest):
        client.set_iam_policy(request={"resource": name, "policy": bad})


def test_iam_conditions_need_policy_version_3(stand: Handle, client: run_v2.ServicesClient) -> None:
    name = client.create_service(parent=PARENT, service_id="orders", service=service()).result().name
    url = f"{stand.url}/v2/{name}"
    conditional = {
        "role": "roles/run.invoker",
        "members": ["user:dana@example.com"],
        "condition": {
            "title": "until 2030",
            "expression": "request.time < timestamp('2030-01-01T00:00:00Z')",
        },
    }
    plain = {
        "role": "roles/run.invoker",
        "members": ["serviceAccount:apigee@my-proj.iam.gserviceaccount.com"],
    }
    refused = requests.post(f"{url}:setIamPolicy", json={"policy": {"bindings": [conditional]}}, timeout=10)
    assert refused.status_code == 400, "conditions without version 3"
    stored = requests.post(
        f"{url}:setIamPolicy", json={"policy": {"version": 3, "bindings": [plain, conditional]}}, timeout=10
    ).json()
    assert stored["version"] == 3 and stored["bindings"][1]["condition"] == conditional["condition"]
    # asked for version 3 (through the official client): conditions and version come back
    v3 = client.get_iam_policy(request={"resource": name, "options": {"requested_policy_version": 3}})
    assert v3.version == 3 and [b.condition.title for b in v3.bindings] == ["", "until 2030"]
    # not asked for 3: IAM's version-1 rendering, the condition hidden behind a _withcond_ role
    for params in ({}, {"options.requestedPolicyVersion": 1}):
        v1 = requests.get(f"{url}:getIamPolicy", params=params, timeout=10).json()
        assert v1["version"] == 1 and all("condition" not in b for b in v1["bindings"])
        assert v1["bindings"][0] == plain
        assert v1["bindings"][1]["role"].startswith("roles/run.invoker_withcond_")
        # writing that rendering back (with its etag) is refused: it would lose the condition
        back = requests.post(f"{url}:setIamPolicy", json={"policy": v1}, timeout=10)
        assert back.status_code == 400
        without = requests.post(
            f"{url}:setIamPolicy", json={"policy": {**v1, "bindings": [plain]}}, timeout=10
        )
        assert without.status_code == 400, "a version-1 write over conditions, with an etag"
    assert (
        requests.get(
            f"{url}:getIamPolicy", params={"options.requestedPolicyVersion": 2}, timeout=10
        ).status_code
        == 400
    )
    # without an etag, a version-1 policy overwrites a version-3 one and the conditions are lost (docs)
    overwritten = requests.post(
        f"{url}:setIamPolicy", json={"policy": {"bindings": [plain]}}, timeout=10
    ).json()
    assert overwritten["version"] == 1 and overwritten["bindings"] == [plain]


def test_delete_and_operations(client: run_v2.ServicesClient, stand: Handle) -> None:
    name = client.create_service(parent=PARENT, service_id="orders", service=service()).result().name
    current = client.get_service(name=name)
    with pytest.raises(exceptions.Conflict):
        client.delete_service(request={"name": name, "etag": '"stale"'}).result()
    operation = client.delete_service(request={"name": name, "etag": current.etag})
    deleted = operation.result(timeout=10)
    assert deleted.name == name and deleted.delete_time
    with pytest.raises(exceptions.NotFound):
        client.get_service(name=name)
    assert [s.name for s in client.list_services(request={"parent": PARENT})] == []
    assert [s.name for s in client.list_services(request={"parent": PARENT, "show_deleted": True})] == [name]
    # the long-running operations API (what the REST transport polls when an operation is not done)
    operations = client.transport.operations_client
    fetched = operations.get_operation(operation.operation.name)
    assert fetched.done and fetched.response.type_url == "type.googleapis.com/google.cloud.run.v2.Service"
    listed = [op.name for op in operations.list_operations(name=PARENT, filter_="")]
    assert operation.operation.name in listed and len(listed) == 2
    operations.delete_operation(operation.operation.name)
    with pytest.raises(exceptions.NotFound):
        operations.get_operation(operation.operation.name)


def test_enum_numbers_are_stored_as_names(client: run_v2.ServicesClient, stand: Handle) -> None:
    client.create_service(parent=PARENT, service_id="orders", service=service()).result()
    raw = requests.get(f"{stand.url}/v2/{PARENT}/services/orders", timeout=10).json()
    assert raw["ingress"] == "INGRESS_TRAFFIC_ALL"  # the client sent 1 ($alt=json;enum-encoding=int)
    assert raw["generation"] == "1" and raw["terminalCondition"]["state"] == "CONDITION_SUCCEEDED"


# -- audit logs through the real Pub/Sub emulator -------------------------------------------------


@pytest.fixture(scope="module")
def pubsub_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[processes.Managed]:
    managed = processes.start_pubsub_emulator(tmp_path_factory.mktemp("pubsub"))
    yield managed
    processes.stop(managed)
    assert not processes.alive(managed.pid)


@pytest.fixture
def audit(
    pubsub_emulator: processes.Managed, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Handle, Callable[[int], list[tuple[dict[str, Any], dict[str, str]]]]]]:
    """A stand-in publishing to a fresh topic, and a function pulling ``n`` (entry, attributes)."""
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", pubsub_emulator.host_port)
    suffix = uuid.uuid4().hex[:8]
    topic, subscription = (
        f"projects/{PROJECT}/topics/run-audit-{suffix}",
        f"projects/{PROJECT}/subscriptions/s-{suffix}",
    )
    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    publisher.create_topic(name=topic)
    subscriber.create_subscription(name=subscription, topic=topic)
    handle = cloudrun.start(audit_topic=topic, principal="deployer@my-proj.iam.gserviceaccount.com")

    def pull(count: int) -> list[tuple[dict[str, Any], dict[str, str]]]:
        handle.standin.flush()  # type: ignore[attr-defined]
        got: list[tuple[dict[str, Any], dict[str, str]]] = []
        deadline = time.monotonic() + 30
        while len(got) < count and time.monotonic() < deadline:
            response = subscriber.pull(request={"subscription": subscription, "max_messages": 50}, timeout=10)
            if response.received_messages:
                subscriber.acknowledge(
                    request={
                        "subscription": subscription,
                        "ack_ids": [m.ack_id for m in response.received_messages],
                    }
                )
            got += [
                (json.loads(m.message.data), dict(m.message.attributes)) for m in response.received_messages
            ]
        return got

    try:
        yield handle, pull
    finally:
        handle.stop()
        subscriber.close()
        publisher.transport.close()


def test_audit_entries_for_create_update_delete(audit: Any) -> None:
    handle, pull = audit
    client = client_for(handle)
    try:
        created = client.create_service(
            parent=PARENT, service_id="orders", service=service(team="a")
        ).result()
        created.labels["gatehouse"] = "expose"
        client.update_service(service=created).result()
        client.delete_service(name=created.name).result()
    finally:
        client.transport.close()
    messages = pull(6)
    assert len(messages) == 6
    name = f"{PARENT}/services/orders"
    by_operation: dict[str, dict[str, dict[str, Any]]] = {}
    for entry, attributes in messages:
        assert attributes == {"logging.googleapis.com/timestamp": entry["timestamp"]}
        assert entry["logName"] == f"projects/{PROJECT}/logs/cloudaudit.googleapis.com%2Factivity"
        assert entry["resource"] == {
            "type": "cloud_run_revision",
            "labels": {
                "project_id": PROJECT,
                "location": "europe-west1",
                "service_name": "orders",
                "configuration_name": "",
                "revision_name": "",
            },
        }
        assert entry["severity"] == "NOTICE" and entry["insertId"] and entry["receiveTimestamp"]
        payload = entry["protoPayload"]
        assert payload["@type"] == "type.googleapis.com/google.cloud.audit.AuditLog"
        assert payload["serviceName"] == "run.googleapis.com"
        assert payload["resourceName"] == name
        assert payload["authenticationInfo"]["principalEmail"] == "deployer@my-proj.iam.gserviceaccount.com"
        operation = entry["operation"]
        assert operation["producer"] == "run.googleapis.com"
        position = "first" if operation.get("first") else "last"
        by_operation.setdefault(operation["id"], {})[position] = entry
    assert len({e["insertId"] for e, _ in messages}) == 6
    methods = {}
    for pair in by_operation.values():
        assert set(pair) == {"first", "last"}
        first, last = pair["first"]["protoPayload"], pair["last"]["protoPayload"]
        assert first["methodName"] == last["methodName"]
        assert "last" not in pair["first"]["operation"] and "first" not in pair["last"]["operation"]
        assert first["request"]["@type"].startswith("type.googleapis.com/google.cloud.run.v2.")
        assert last["response"]["@type"] == "type.googleapis.com/google.cloud.run.v2.Service"
        assert pair["first"]["timestamp"] <= pair["last"]["timestamp"]
        methods[first["methodName"].rsplit(".", 1)[1]] = (first, last)
    assert set(methods) == {"CreateService", "UpdateService", "DeleteService"}
    create_request = methods["CreateService"][0]["request"]
    assert create_request["parent"] == PARENT and create_request["serviceId"] == "orders"
    assert create_request["service"]["labels"] == {"team": "a"}
    assert methods["UpdateService"][0]["request"]["service"]["labels"] == {"team": "a", "gatehouse": "expose"}
    assert methods["UpdateService"][1]["response"]["generation"] == "2"
    assert methods["DeleteService"][0]["request"] == {
        "@type": "type.googleapis.com/google.cloud.run.v2.DeleteServiceRequest",
        "name": name,
    }
    assert methods["DeleteService"][1]["response"]["deleteTime"]


def test_raw_log_entries_can_be_injected(audit: Any) -> None:
    handle, pull = audit
    entry = {
        "insertId": "v1-entry",
        "logName": f"projects/{PROJECT}/logs/cloudaudit.googleapis.com%2Factivity",
        "timestamp": "2025-03-01T10:00:00.000000Z",
        "protoPayload": {
            "@type": "type.googleapis.com/google.cloud.audit.AuditLog",
            "serviceName": "run.googleapis.com",
            "methodName": "google.cloud.run.v1.Services.ReplaceService",
            "resourceName": f"namespaces/{PROJECT}/services/orders",
        },
    }
    response = requests.post(f"{handle.url}/_standin/cloudrun/audit", json=entry, timeout=10)
    assert response.json() == {"queued": 1}
    ((received, attributes),) = pull(1)
    assert received == entry
    assert attributes == {"logging.googleapis.com/timestamp": "2025-03-01T10:00:00.000000Z"}


def test_no_audit_topic_means_no_publishing(stand: Handle) -> None:
    response = requests.post(f"{stand.url}/_standin/cloudrun/audit", json={}, timeout=10)
    assert response.status_code == 400


def test_cli_serves_the_official_client(tmp_path: Path) -> None:
    port = processes.free_port()
    managed = processes.start_python(
        "cloudrun-standin",
        [
            "-m",
            "gatehouse.local.standins.cloudrun",
            "--port",
            str(port),
            "--project-number-map",
            f"{PROJECT}=42",
        ],
        port=port,
        log_dir=tmp_path,
        ready_path="/_standin/health",
        timeout=30,
    )
    try:
        client = run_v2.ServicesClient(
            transport="rest",
            client_options={"api_endpoint": managed.url},
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        )
        created = client.create_service(parent=PARENT, service_id="orders", service=service()).result(
            timeout=10
        )
        assert "https://orders-42.europe-west1.run.app" in created.urls
        client.transport.close()
    finally:
        processes.stop(managed)
    assert not processes.alive(managed.pid)
