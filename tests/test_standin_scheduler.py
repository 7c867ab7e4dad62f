"""The Cloud Scheduler v1 stand-in through the official client (google-cloud-scheduler, REST
transport): the calls, the state machine of pause/resume, the refusals; and gatehouse's
``SchedulerJobs`` adapter on top of it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import requests
from google.api_core import exceptions
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import scheduler_v1
from google.protobuf import field_mask_pb2

from gatehouse.adapters.scheduler import CloudSchedulerJobs
from gatehouse.errors import PermanentError
from gatehouse.local.standins import scheduler as standin
from gatehouse.local.standins.discovery import Discovery
from gatehouse.local.standins.server import Handle

PARENT = "projects/gatehouse-local/locations/europe-west1"
TICK = f"{PARENT}/jobs/gatehouse-rollout-tick"
T0 = datetime(2025, 3, 3, 8, 0, tzinfo=UTC)


@pytest.fixture
def stand() -> Iterator[Handle]:
    handle = standin.start(clock=lambda: T0, check_fields=True)
    yield handle
    handle.stop()


@pytest.fixture
def client(stand: Handle) -> Iterator[scheduler_v1.CloudSchedulerClient]:
    client = scheduler_v1.CloudSchedulerClient(
        transport="rest",
        client_options=ClientOptions(api_endpoint=stand.url),
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
    )
    yield client
    client.transport.close()


def tick_job(name: str = TICK) -> scheduler_v1.Job:
    return scheduler_v1.Job(
        name=name,
        description="gatehouse: advance a fleet-wide rollout",
        schedule="*/5 * * * *",
        time_zone="Etc/UTC",
        pubsub_target=scheduler_v1.PubsubTarget(
            topic_name="projects/gatehouse-local/topics/gatehouse-commands",
            data=b'{"command": "rollout", "action": "tick"}',
        ),
        retry_config=scheduler_v1.RetryConfig(retry_count=0),
    )


def test_create_get_list_delete(client: scheduler_v1.CloudSchedulerClient) -> None:
    created = client.create_job(parent=PARENT, job=tick_job())
    assert created.name == TICK
    assert created.state == scheduler_v1.Job.State.ENABLED
    assert created.user_update_time.timestamp() == T0.timestamp()
    assert created.pubsub_target.data == b'{"command": "rollout", "action": "tick"}'

    got = client.get_job(name=TICK)
    assert got == created
    other = client.create_job(parent=PARENT, job=tick_job(f"{PARENT}/jobs/a-first"))
    assert [j.name for j in client.list_jobs(parent=PARENT)] == [other.name, TICK]
    assert list(client.list_jobs(parent="projects/gatehouse-local/locations/us-central1")) == []

    client.delete_job(name=TICK)
    with pytest.raises(exceptions.NotFound):
        client.get_job(name=TICK)
    with pytest.raises(exceptions.NotFound):
        client.delete_job(name=TICK)


def test_list_pages(client: scheduler_v1.CloudSchedulerClient) -> None:
    for i in range(5):
        client.create_job(parent=PARENT, job=tick_job(f"{PARENT}/jobs/j{i}"))
    pager = client.list_jobs(request={"parent": PARENT, "page_size": 2})
    assert [len(page.jobs) for page in pager.pages] == [2, 2, 1]
    assert [j.name.rsplit("/", 1)[-1] for j in client.list_jobs(parent=PARENT)] == [f"j{i}" for i in range(5)]


def test_create_of_an_existing_name_is_already_exists(client: scheduler_v1.CloudSchedulerClient) -> None:
    client.create_job(parent=PARENT, job=tick_job())
    with pytest.raises(exceptions.Conflict) as caught:  # REST maps 409 to Conflict
        client.create_job(parent=PARENT, job=tick_job())
    assert "already exists" in str(caught.value)


def test_create_without_a_name_makes_one_up(client: scheduler_v1.CloudSchedulerClient) -> None:
    job = tick_job()
    job.name = ""
    created = client.create_job(parent=PARENT, job=job)
    assert created.name.startswith(f"{PARENT}/jobs/") and created.name != f"{PARENT}/jobs/"


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"schedule": ""}, "schedule is required"),
        ({"name": "projects/other/locations/europe-west1/jobs/x"}, "Invalid job name"),
        ({"name": f"{PARENT}/jobs/has space"}, "Invalid job name"),
        ({"time_zone": "Mars/Olympus"}, "time zone"),
        ({"description": "x" * 501}, "at most 500"),
        ({"pubsub_target": None}, "exactly one target"),
        (
            {"pubsub_target": scheduler_v1.PubsubTarget(topic_name="projects/elsewhere/topics/t", data=b"x")},
            "same project",
        ),
        (
            {"pubsub_target": scheduler_v1.PubsubTarget(topic_name="projects/gatehouse-local/topics/t")},
            "non-empty data",
        ),
    ],
)
def test_create_refuses_what_the_api_refuses(
    client: scheduler_v1.CloudSchedulerClient, change: dict[str, object], words: str
) -> None:
    job = tick_job()
    for key, value in change.items():
        setattr(job, key, value)
    with pytest.raises(exceptions.BadRequest) as caught:
        client.create_job(parent=PARENT, job=job)
    assert words in str(caught.value)
    assert list(client.list_jobs(parent=PARENT)) == []


def test_pause_and_resume_return_the_job_in_its_new_state(client: scheduler_v1.CloudSchedulerClient) -> None:
    client.create_job(parent=PARENT, job=tick_job())
    paused = client.pause_job(name=TICK)
    assert paused.state == scheduler_v1.Job.State.PAUSED
    assert client.get_job(name=TICK).state == scheduler_v1.Job.State.PAUSED
    resumed = client.resume_job(name=TICK)
    assert resumed.state == scheduler_v1.Job.State.ENABLED
    assert client.get_job(name=TICK).state == scheduler_v1.Job.State.ENABLED


def test_pause_needs_enabled_and_resume_needs_paused(client: scheduler_v1.CloudSchedulerClient) -> None:
    client.create_job(parent=PARENT, job=tick_job())
    with pytest.raises(exceptions.BadRequest) as caught:
        client.resume_job(name=TICK)
    assert "must be PAUSED" in str(caught.value)
    client.pause_job(name=TICK)
    with pytest.raises(exceptions.BadRequest) as caught:
        client.pause_job(name=TICK)
    assert "must be ENABLED" in str(caught.value)


@pytest.mark.parametrize("verb", ["get_job", "pause_job", "resume_job", "delete_job"])
def test_a_missing_job_is_not_found(client: scheduler_v1.CloudSchedulerClient, verb: str) -> None:
    with pytest.raises(exceptions.NotFound):
        getattr(client, verb)(name=f"{PARENT}/jobs/nope")


def test_patch_honours_the_update_mask_and_keeps_the_state(client: scheduler_v1.CloudSchedulerClient) -> None:
    client.create_job(parent=PARENT, job=tick_job())
    client.pause_job(name=TICK)
    change = tick_job()
    change.schedule = "*/10 * * * *"
    change.description = "not in the mask"
    updated = client.update_job(job=change, update_mask=field_mask_pb2.FieldMask(paths=["schedule"]))
    assert updated.schedule == "*/10 * * * *"
    assert updated.description == "gatehouse: advance a fleet-wide rollout"
    assert updated.state == scheduler_v1.Job.State.PAUSED  # an update keeps a paused job paused

    retarget = scheduler_v1.Job(
        name=TICK,
        http_target=scheduler_v1.HttpTarget(
            uri="https://example.com/run",
            http_method=scheduler_v1.HttpMethod.PUT,  # sent as a number ($alt=json;enum-encoding=int)
            oauth_token=scheduler_v1.OAuthToken(service_account_email="s@p.iam.gserviceaccount.com"),
        ),
    )
    updated = client.update_job(job=retarget, update_mask=field_mask_pb2.FieldMask(paths=["http_target"]))
    assert updated.http_target.uri == "https://example.com/run"
    assert updated.http_target.http_method == scheduler_v1.HttpMethod.PUT
    assert (
        client.get_job(name=TICK).http_target.oauth_token.service_account_email
        == "s@p.iam.gserviceaccount.com"
    )
    assert not updated.pubsub_target.topic_name  # the target is a oneof

    with pytest.raises(exceptions.BadRequest) as caught:
        client.update_job(job=change, update_mask=field_mask_pb2.FieldMask(paths=["state"]))
    assert "output only" in str(caught.value)
    with pytest.raises(exceptions.NotFound):
        client.update_job(
            job=tick_job(f"{PARENT}/jobs/nope"), update_mask=field_mask_pb2.FieldMask(paths=["schedule"])
        )


def test_wrong_content_type_and_unknown_fields_are_refused(stand: Handle) -> None:
    url = f"{stand.url}/v1/{PARENT}/jobs"
    answer = requests.post(url, data="schedule=x", headers={"Content-Type": "text/plain"}, timeout=5)
    assert answer.status_code == 400
    assert answer.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert "Content-Type" in answer.json()["error"]["message"]
    answer = requests.post(url, json={"schedule": "* * * * *", "colour": "red"}, timeout=5)
    assert answer.status_code == 400 and "colour" in answer.json()["error"]["message"]
    two_targets = {
        "schedule": "* * * * *",
        "httpTarget": {"uri": "https://example.com/"},
        "pubsubTarget": {"topicName": "projects/gatehouse-local/topics/t", "data": "eA=="},
    }
    answer = requests.post(url, json=two_targets, timeout=5)  # the client cannot send this: a oneof
    assert answer.status_code == 400 and "exactly one target" in answer.json()["error"]["message"]
    answer = requests.post(
        f"{stand.url}/v1/{TICK}:pause", data="x", headers={"Content-Type": "text/plain"}, timeout=5
    )
    assert answer.status_code == 400


def test_every_route_is_a_discovery_method() -> None:
    api = Discovery("cloudscheduler.v1")
    served = standin.Scheduler().handlers
    assert set(served) <= set(api.methods)
    assert {m.rsplit(".", 1)[-1] for m in served} == {
        "create",
        "get",
        "list",
        "patch",
        "delete",
        "pause",
        "resume",
    }


# -- the adapter ---------------------------------------------------------------------------------


@pytest.fixture
def jobs(stand: Handle) -> Iterator[CloudSchedulerJobs]:
    adapter = CloudSchedulerJobs(endpoint=stand.url, anonymous=True)
    yield adapter
    adapter.close()


def test_adapter_reads_pauses_and_resumes(
    client: scheduler_v1.CloudSchedulerClient, jobs: CloudSchedulerJobs
) -> None:
    client.create_job(parent=PARENT, job=tick_job())
    assert jobs.state(TICK) == "ENABLED"
    assert jobs.state(f"{PARENT}/jobs/nope") is None
    assert jobs.pause(TICK) == "PAUSED"
    assert jobs.resume(TICK) == "ENABLED"


def test_adapter_reports_refusals_as_permanent_errors(
    client: scheduler_v1.CloudSchedulerClient, jobs: CloudSchedulerJobs
) -> None:
    client.create_job(parent=PARENT, job=tick_job())
    with pytest.raises(PermanentError) as caught:
        jobs.resume(TICK)
    assert caught.value.status == 400
    with pytest.raises(PermanentError) as missing:
        jobs.pause(f"{PARENT}/jobs/nope")
    assert missing.value.status == 404
