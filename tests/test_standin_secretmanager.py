"""The Secret Manager v1 stand-in through the official client (REST transport), gatehouse's
``SecretManagerStore`` on top of it, and SECRET_ROTATE notifications through the real Pub/Sub
emulator."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from google.api_core import exceptions
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import pubsub_v1, secretmanager

from gatehouse.adapters.secretmanager import SecretManagerStore
from gatehouse.errors import ConflictError, NotFoundError, PermanentError, TransientError
from gatehouse.local import processes
from gatehouse.local.standins import secretmanager as sm
from gatehouse.local.standins.server import Handle
from gatehouse.rotation.material import Material, crc32c
from gatehouse.rotation.ports import VersionState

PROJECT, NUMBER = "app-proj", "123456789012"
SECRET = f"projects/{NUMBER}/secrets/api-token"
T0 = datetime(2025, 3, 3, 8, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def stand(clock: Clock) -> Iterator[Handle]:
    handle = sm.start(clock=clock, project_numbers={PROJECT: NUMBER}, check_fields=True)
    yield handle
    handle.stop()


@pytest.fixture
def client(stand: Handle) -> Iterator[secretmanager.SecretManagerServiceClient]:
    client = secretmanager.SecretManagerServiceClient(
        transport="rest",
        client_options=ClientOptions(api_endpoint=stand.url),
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
    )
    client.create_secret(
        parent=f"projects/{PROJECT}",
        secret_id="api-token",
        secret={"replication": {"automatic": {}}, "labels": {"gatehouse-rotate": "generated", "team": "a"}},
    )
    yield client
    client.transport.close()


@pytest.fixture
def store(stand: Handle, client: Any) -> Iterator[SecretManagerStore]:
    adapter = SecretManagerStore(endpoint=stand.url, anonymous=True, retry_attempts=2, retry_max_wait=0.05)
    yield adapter
    adapter.close()


def add(client: secretmanager.SecretManagerServiceClient, data: bytes, name: str = SECRET) -> Any:
    return client.add_secret_version(parent=name, payload={"data": data, "data_crc32c": crc32c(data)})


def status_of(exc: exceptions.GoogleAPICallError) -> str:
    return str(exc.response.json()["error"]["status"])  # type: ignore[attr-defined]


# -- secrets ------------------------------------------------------------------------------------


def test_names_use_the_project_number_and_either_form_is_accepted(client: Any) -> None:
    by_id = client.get_secret(name=f"projects/{PROJECT}/secrets/api-token")
    by_number = client.get_secret(name=SECRET)
    assert by_id.name == by_number.name == SECRET
    assert by_id.create_time == T0 and by_id.etag.startswith('"')
    with pytest.raises(exceptions.NotFound):
        client.get_secret(name=f"projects/{PROJECT}/secrets/missing")
    with pytest.raises(exceptions.Conflict):
        client.create_secret(
            parent=f"projects/{PROJECT}", secret_id="api-token", secret={"replication": {"automatic": {}}}
        )
    with pytest.raises(exceptions.BadRequest):  # replication is required
        client.create_secret(parent=f"projects/{PROJECT}", secret_id="x", secret={})


def test_list_filters_and_pages(client: Any) -> None:
    for n in range(5):
        client.create_secret(
            parent=f"projects/{PROJECT}",
            secret_id=f"other-{n}",
            secret={"replication": {"automatic": {}}, "labels": {"team": "b" if n % 2 else "a"}},
        )

    def names(flt: str, page_size: int = 2) -> list[str]:
        request = {"parent": f"projects/{PROJECT}", "filter": flt, "page_size": page_size}
        return [s.name.rsplit("/", 1)[-1] for s in client.list_secrets(request=request)]

    assert names("labels.gatehouse-rotate:*") == ["api-token"]
    assert names("labels.team=a") == ["api-token", "other-0", "other-2", "other-4"]
    assert names("labels.team:b AND name:other") == ["other-1", "other-3"]
    assert len(names("", page_size=0)) == 6
    pager = client.list_secrets(request={"parent": f"projects/{PROJECT}", "page_size": 4})
    assert [len(p.secrets) for p in pager.pages] == [4, 2]
    with pytest.raises(exceptions.BadRequest):
        names("labels.team=a OR labels.team=b")


def test_update_mask_etag_and_annotations(client: Any) -> None:
    secret = client.get_secret(name=SECRET)
    updated = client.update_secret(
        secret={"name": SECRET, "etag": secret.etag, "annotations": {"gatehouse-state-x": "1"}},
        update_mask={"paths": ["annotations"]},
    )
    assert updated.etag != secret.etag and dict(updated.annotations) == {"gatehouse-state-x": "1"}
    assert dict(updated.labels) == dict(secret.labels)  # not in the mask: untouched
    with pytest.raises(exceptions.BadRequest) as stale:
        client.update_secret(
            secret={"name": SECRET, "etag": secret.etag, "annotations": {}},
            update_mask={"paths": ["annotations"]},
        )
    assert status_of(stale.value) == "FAILED_PRECONDITION" and "etag mismatch" in stale.value.message
    with pytest.raises(exceptions.BadRequest, match="update_mask is required"):
        client.update_secret(secret={"name": SECRET, "labels": {}}, update_mask={"paths": []})
    with pytest.raises(exceptions.BadRequest, match="cannot be updated"):
        client.update_secret(secret={"name": SECRET}, update_mask={"paths": ["replication"]})
    for bad in ("-leading", "trailing.", "has/slash", "x" * 64, ""):
        with pytest.raises(exceptions.BadRequest, match="annotation key"):
            client.update_secret(
                secret={"name": SECRET, "annotations": {bad: "v"}}, update_mask={"paths": ["annotations"]}
            )
    fits = {"k": "v" * (16 * 1024 - 2)}  # keys and values together: 16383 bytes
    client.update_secret(secret={"name": SECRET, "annotations": fits}, update_mask={"paths": ["annotations"]})
    with pytest.raises(exceptions.BadRequest, match="16KiB"):
        client.update_secret(
            secret={"name": SECRET, "annotations": {"k": "v" * (16 * 1024 - 1)}},
            update_mask={"paths": ["annotations"]},
        )


# -- versions -----------------------------------------------------------------------------------


def test_add_access_crc_and_size(client: Any) -> None:
    version = add(client, b"first")
    assert version.name == f"{SECRET}/versions/1" and version.state.name == "ENABLED"
    assert version.client_specified_payload_checksum
    accessed = client.access_secret_version(name=f"{SECRET}/versions/latest")
    assert accessed.name == f"{SECRET}/versions/1" and accessed.payload.data == b"first"
    assert accessed.payload.data_crc32c == crc32c(b"first")
    with pytest.raises(exceptions.BadRequest, match="Checksum mismatch") as mismatch:
        client.add_secret_version(parent=SECRET, payload={"data": b"x", "data_crc32c": crc32c(b"y")})
    assert status_of(mismatch.value) == "INVALID_ARGUMENT"
    client.add_secret_version(parent=SECRET, payload={"data": b"a" * 65536})
    with pytest.raises(exceptions.BadRequest, match="at most 65536"):
        client.add_secret_version(parent=SECRET, payload={"data": b"a" * 65537})
    no_crc = client.get_secret_version(name=f"{SECRET}/versions/2")
    assert not no_crc.client_specified_payload_checksum
    assert client.access_secret_version(name=f"{SECRET}/versions/2").payload.data_crc32c == crc32c(
        b"a" * 65536
    )


def test_latest_is_the_newest_version_whatever_its_state(client: Any, stand: Handle) -> None:
    add(client, b"one")
    two = add(client, b"two")
    client.disable_secret_version(request={"name": two.name, "etag": two.etag})
    # Google: "latest" is the most recently created version; disabled -> FAILED_PRECONDITION
    with pytest.raises(exceptions.BadRequest) as disabled:
        client.access_secret_version(name=f"{SECRET}/versions/latest")
    assert status_of(disabled.value) == "FAILED_PRECONDITION"
    assert f"Secret Version [{SECRET}/versions/2] is in DISABLED state." in disabled.value.message
    assert client.get_secret_version(name=f"{SECRET}/versions/latest").name == two.name
    # the enabled older version stays readable by number
    assert client.access_secret_version(name=f"{SECRET}/versions/1").payload.data == b"one"


def test_list_versions_newest_first_with_state_filter(client: Any) -> None:
    versions = [add(client, str(n).encode()) for n in range(4)]
    client.disable_secret_version(request={"name": versions[1].name})
    listed = [(v.name.rsplit("/", 1)[-1], v.state.name) for v in client.list_secret_versions(parent=SECRET)]
    assert listed == [("4", "ENABLED"), ("3", "ENABLED"), ("2", "DISABLED"), ("1", "ENABLED")]
    enabled = client.list_secret_versions(
        request={"parent": SECRET, "filter": "state:ENABLED", "page_size": 2}
    )
    assert [len(p.versions) for p in enabled.pages] == [2, 1]


def test_aliases(client: Any) -> None:
    add(client, b"one")
    add(client, b"two")
    secret = client.update_secret(
        secret={"name": SECRET, "version_aliases": {"current": 2, "previous": 1}},
        update_mask={"paths": ["version_aliases"]},
    )
    assert dict(secret.version_aliases) == {"current": 2, "previous": 1}
    assert client.access_secret_version(name=f"{SECRET}/versions/previous").payload.data == b"one"
    assert client.get_secret_version(name=f"{SECRET}/versions/current").name.endswith("/2")
    for aliases, why in (
        ({"latest": 1}, "Invalid version alias"),
        ({"NEW": 1}, "Invalid version alias"),
        ({"1st": 1}, "Invalid version alias"),
        ({"a" * 64: 1}, "Invalid version alias"),
        ({"ghost": 9}, "does not exist"),
        ({f"a{n}": 1 for n in range(51)}, "at most 50"),
    ):
        with pytest.raises(exceptions.BadRequest, match=why):
            client.update_secret(
                secret={"name": SECRET, "version_aliases": aliases},
                update_mask={"paths": ["version_aliases"]},
            )
    client.update_secret(
        secret={"name": SECRET, "version_aliases": {f"a{n}": 1 for n in range(50)}},
        update_mask={"paths": ["version_aliases"]},
    )
    cleared = client.update_secret(secret={"name": SECRET}, update_mask={"paths": ["version_aliases"]})
    assert dict(cleared.version_aliases) == {}
    with pytest.raises(exceptions.NotFound):
        client.access_secret_version(name=f"{SECRET}/versions/current")


def test_version_etags_and_destroy_is_terminal(client: Any) -> None:
    version = add(client, b"one")
    with pytest.raises(exceptions.BadRequest) as stale:
        client.disable_secret_version(request={"name": version.name, "etag": '"stale"'})
    assert status_of(stale.value) == "FAILED_PRECONDITION" and "etag mismatch" in stale.value.message
    disabled = client.disable_secret_version(request={"name": version.name, "etag": version.etag})
    assert disabled.state.name == "DISABLED" and disabled.etag != version.etag
    again = client.disable_secret_version(request={"name": version.name})
    assert again.etag == disabled.etag  # no change, no new etag
    destroyed = client.destroy_secret_version(request={"name": version.name, "etag": disabled.etag})
    assert destroyed.state.name == "DESTROYED" and destroyed.destroy_time == T0
    for call in (client.enable_secret_version, client.disable_secret_version, client.destroy_secret_version):
        with pytest.raises(exceptions.BadRequest) as terminal:
            call(request={"name": version.name})
        assert (
            status_of(terminal.value) == "FAILED_PRECONDITION" and "DESTROYED state" in terminal.value.message
        )
        assert "etag" not in terminal.value.message
    with pytest.raises(exceptions.BadRequest, match="DESTROYED state"):
        client.access_secret_version(name=version.name)


def test_delayed_destroy(client: Any, clock: Clock) -> None:
    client.update_secret(
        secret={"name": SECRET, "version_destroy_ttl": timedelta(days=1)},
        update_mask={"paths": ["version_destroy_ttl"]},
    )
    version = add(client, b"one")
    scheduled = client.destroy_secret_version(request={"name": version.name})
    assert scheduled.state.name == "DISABLED" and scheduled.scheduled_destroy_time == T0 + timedelta(days=1)
    clock.now += timedelta(days=1, seconds=1)
    assert client.get_secret_version(name=version.name).state.name == "DESTROYED"


# -- the adapter -----------------------------------------------------------------------------------


def test_store_round_trip(store: SecretManagerStore, client: Any) -> None:
    number = store.add_secret_version(SECRET, Material(b"value-1"), crc32c=crc32c(b"value-1"))
    assert number == 1
    accessed = store.access_secret_version(SECRET, "latest")
    assert (
        accessed.number == 1
        and accessed.payload.reveal() == b"value-1"
        and accessed.crc32c == crc32c(b"value-1")
    )
    info = store.get_secret(SECRET)
    updated = store.update_secret(
        SECRET, etag=info.etag, version_aliases={"current": 1}, annotations={"a": "b"}
    )
    assert updated.version_aliases == {"current": 1} and updated.annotations == {"a": "b"}
    assert updated.labels == {"gatehouse-rotate": "generated", "team": "a"}
    (listed,) = list(store.list_secrets(f"projects/{PROJECT}", filter="labels.gatehouse-rotate:*"))
    assert listed.name == SECRET and listed.etag == updated.etag
    (version,) = store.list_secret_versions(SECRET)
    assert version.number == 1 and version.state is VersionState.ENABLED and version.create_time == T0
    store.disable_secret_version(SECRET, 1, etag=version.etag)
    store.destroy_secret_version(SECRET, 1, etag=store.list_secret_versions(SECRET)[0].etag)
    assert store.list_secret_versions(SECRET)[0].state is VersionState.DESTROYED


def test_store_tells_etag_conflicts_from_wrong_states(store: SecretManagerStore, client: Any) -> None:
    info = store.get_secret(SECRET)
    store.update_secret(SECRET, etag=info.etag, annotations={"a": "1"})
    with pytest.raises(ConflictError) as conflict:
        store.update_secret(SECRET, etag=info.etag, annotations={"a": "2"})
    assert conflict.value.reason == "FAILED_PRECONDITION"
    store.add_secret_version(SECRET, Material(b"v"), crc32c=crc32c(b"v"))
    (version,) = store.list_secret_versions(SECRET)
    with pytest.raises(ConflictError):
        store.disable_secret_version(SECRET, 1, etag='"stale"')
    store.destroy_secret_version(SECRET, 1, etag=version.etag)
    with pytest.raises(PermanentError) as wrong_state:
        store.access_secret_version(SECRET, "1")
    assert wrong_state.value.reason == "FAILED_PRECONDITION" and not isinstance(
        wrong_state.value, ConflictError
    )
    with pytest.raises(PermanentError) as terminal:
        store.destroy_secret_version(SECRET, 1, etag=store.list_secret_versions(SECRET)[0].etag)
    assert terminal.value.reason == "FAILED_PRECONDITION" and not isinstance(terminal.value, ConflictError)
    with pytest.raises(NotFoundError):
        store.get_secret(f"projects/{NUMBER}/secrets/missing")
    with pytest.raises(PermanentError) as bad_crc:
        store.add_secret_version(SECRET, Material(b"v"), crc32c=1)
    assert bad_crc.value.reason == "INVALID_ARGUMENT"
    with pytest.raises(PermanentError, match="65536"):
        store.add_secret_version(SECRET, Material(b"x" * 65537), crc32c=0)


def test_store_retries_transient_errors_but_not_adding_a_version_after_a_5xx(
    store: SecretManagerStore, stand: Handle
) -> None:
    faults = {"error_rate": 1.0, "statuses": [503]}
    requests.post(stand.url + "/_standin/faults", json=faults, timeout=10)
    requests.post(stand.url + "/_standin/stats/reset", timeout=10)
    with pytest.raises(TransientError):
        store.get_secret(SECRET)
    with pytest.raises(TransientError) as lost:
        store.add_secret_version(SECRET, Material(b"secret-value"), crc32c=crc32c(b"secret-value"))
    assert lost.value.__cause__ is None and lost.value.__context__ is None  # no request/response kept
    methods = requests.get(stand.url + "/_standin/stats", timeout=10).json()["methods"]
    assert methods == {
        "secretmanager.projects.secrets.get": 2,
        "secretmanager.projects.secrets.addVersion": 1,
    }


# -- SECRET_ROTATE through the Pub/Sub emulator ----------------------------------------------------


@pytest.fixture(scope="module")
def pubsub_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[processes.Managed]:
    managed = processes.start_pubsub_emulator(tmp_path_factory.mktemp("pubsub"))
    yield managed
    processes.stop(managed)
    assert not processes.alive(managed.pid)


def test_secret_rotate_and_version_events_are_published(
    pubsub_emulator: processes.Managed, monkeypatch: pytest.MonkeyPatch, clock: Clock
) -> None:
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", pubsub_emulator.host_port)
    suffix = uuid.uuid4().hex[:8]
    topic, subscription = (
        f"projects/{PROJECT}/topics/sm-{suffix}",
        f"projects/{PROJECT}/subscriptions/sm-{suffix}",
    )
    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    publisher.create_topic(name=topic)
    subscriber.create_subscription(name=subscription, topic=topic)
    handle = sm.start(clock=clock, project_numbers={PROJECT: NUMBER})
    client = secretmanager.SecretManagerServiceClient(
        transport="rest",
        client_options=ClientOptions(api_endpoint=handle.url),
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
    )
    try:
        client.create_secret(
            parent=f"projects/{PROJECT}",
            secret_id="rotated",
            secret={
                "replication": {"automatic": {}},
                "topics": [{"name": topic}],
                "rotation": {
                    "next_rotation_time": T0 + timedelta(days=1),
                    "rotation_period": timedelta(days=30),
                },
            },
        )
        name = f"projects/{NUMBER}/secrets/rotated"
        add(client, b"v1", name)
        hook = requests.post(handle.url + "/_standin/secretmanager/rotate", json={"secret": name}, timeout=10)
        assert hook.ok, hook.text
        assert client.get_secret(name=name).rotation.next_rotation_time == T0 + timedelta(days=31)
        no_topics = requests.post(
            handle.url + "/_standin/secretmanager/rotate", json={"secret": SECRET}, timeout=10
        )
        assert no_topics.status_code == 404  # that secret does not exist in this stand-in
        handle.standin.flush()  # type: ignore[attr-defined]
        got: list[tuple[dict[str, Any], dict[str, str]]] = []
        deadline = time.monotonic() + 30
        while len(got) < 3 and time.monotonic() < deadline:
            pulled = subscriber.pull(request={"subscription": subscription, "max_messages": 10}, timeout=10)
            if pulled.received_messages:
                subscriber.acknowledge(
                    request={
                        "subscription": subscription,
                        "ack_ids": [m.ack_id for m in pulled.received_messages],
                    }
                )
            got += [
                (json.loads(m.message.data), dict(m.message.attributes)) for m in pulled.received_messages
            ]
        events = {attrs["eventType"]: (data, attrs) for data, attrs in got}
        assert set(events) == {"SECRET_CREATE", "SECRET_VERSION_ADD", "SECRET_ROTATE"}
        data, attrs = events["SECRET_ROTATE"]
        assert attrs == {
            "eventType": "SECRET_ROTATE",
            "secretId": name,
            "dataFormat": "JSON_API_V1",
            "timestamp": "2025-03-03T08:00:00.000000Z",
        }
        assert data["name"] == name and data["topics"] == [{"name": topic}]
        assert "payload" not in json.dumps(data)
        version_data, version_attrs = events["SECRET_VERSION_ADD"]
        assert version_attrs["versionId"] == f"{name}/versions/1" and version_data["state"] == "ENABLED"
        assert handle.standin.publish_errors == []  # type: ignore[attr-defined]
    finally:
        client.transport.close()
        handle.stop()
        subscriber.close()
        publisher.transport.close()


def test_rotate_hook_needs_topics(stand: Handle, client: Any) -> None:
    response = requests.post(
        stand.url + "/_standin/secretmanager/rotate", json={"secret": SECRET}, timeout=10
    )
    assert response.status_code == 400 and "topics" in response.json()["error"]["message"]


def test_cli_serves_and_persists_state(tmp_path: Path) -> None:
    state = tmp_path / "sm.json"

    def start() -> processes.Managed:
        port = processes.free_port()
        argv = [
            "-m",
            "gatehouse.local.standins.secretmanager",
            "--port",
            str(port),
            "--state-file",
            str(state),
        ]
        argv += ["--project-number-map", f"{PROJECT}={NUMBER}"]
        return processes.start_python(
            "sm-standin", argv, port=port, log_dir=tmp_path, ready_path="/_standin/health", timeout=30
        )

    managed = start()
    try:
        store = SecretManagerStore(endpoint=managed.url, anonymous=True)
        store.client.create_secret(
            parent=f"projects/{PROJECT}", secret_id="kept", secret={"replication": {"automatic": {}}}
        )
        store.add_secret_version(f"projects/{PROJECT}/secrets/kept", Material(b"v1"), crc32c=crc32c(b"v1"))
        store.close()
    finally:
        processes.stop(managed)
    managed = start()
    try:
        store = SecretManagerStore(endpoint=managed.url, anonymous=True)
        assert store.access_secret_version(f"projects/{NUMBER}/secrets/kept", "1").payload.reveal() == b"v1"
        store.close()
    finally:
        processes.stop(managed)
    assert not processes.alive(managed.pid)


def test_rotation_schedule_rules(client: Any, clock: Clock) -> None:
    rotation = {"next_rotation_time": T0 + timedelta(days=1), "rotation_period": timedelta(days=30)}
    with pytest.raises(exceptions.BadRequest, match="topics must be set"):
        client.update_secret(
            secret={"name": SECRET, "rotation": rotation}, update_mask={"paths": ["rotation"]}
        )
    topics = [{"name": f"projects/{PROJECT}/topics/t"}]
    too_soon = {**rotation, "next_rotation_time": T0 + timedelta(seconds=60)}
    with pytest.raises(exceptions.BadRequest, match="300s"):
        client.update_secret(
            secret={"name": SECRET, "rotation": too_soon, "topics": topics},
            update_mask={"paths": ["rotation", "topics"]},
        )
    client.update_secret(
        secret={"name": SECRET, "rotation": rotation, "topics": topics},
        update_mask={"paths": ["rotation", "topics"]},
    )
    clock.now += timedelta(days=2)  # the schedule is in the past now; other updates still work
    client.update_secret(
        secret={"name": SECRET, "annotations": {"a": "b"}}, update_mask={"paths": ["annotations"]}
    )
