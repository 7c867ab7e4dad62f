"""Rolling a Cloud Run service onto a new secret version (``CloudRunConsumers.roll``) against the
Cloud Run stand-in, which refuses a reused revision name with a new template as Cloud Run does."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
from google.api_core import exceptions as gexc

from gatehouse.adapters.consumers import CloudRunConsumers, map_update_error
from gatehouse.errors import ConflictError, PermanentError
from gatehouse.local.standins import cloudrun
from gatehouse.local.standins.server import Handle

PROJECT, NUMBER, REGION = "app-proj", "123456789012", "europe-west1"
SECRET = f"projects/{NUMBER}/secrets/api-token"
NAME = f"projects/{PROJECT}/locations/{REGION}/services/orders"


@pytest.fixture
def stand() -> Iterator[Handle]:
    handle = cloudrun.start(project_numbers={PROJECT: NUMBER}, check_fields=True)
    yield handle
    handle.stop()


def _create(stand: Handle, revision: str) -> dict[str, Any]:
    """A service deployed the way gcloud and the console deploy: with a revision name."""
    body = {
        "template": {
            "revision": revision,
            "containers": [
                {
                    "image": "europe-docker.pkg.dev/app-proj/apps/orders:1",
                    "env": [
                        {
                            "name": "TOKEN",
                            "valueSource": {"secretKeyRef": {"secret": "api-token", "version": "1"}},
                        }
                    ],
                }
            ],
        }
    }
    parent = f"{stand.url}/v2/projects/{PROJECT}/locations/{REGION}/services"
    created = requests.post(parent, params={"serviceId": "orders"}, json=body, timeout=10)
    assert created.ok, created.text
    return requests.get(f"{stand.url}/v2/{NAME}", timeout=10).json()  # type: ignore[no-any-return]


def _adapter(stand: Handle) -> CloudRunConsumers:
    return CloudRunConsumers(
        [PROJECT],
        [REGION],
        project_numbers={PROJECT: NUMBER},
        endpoint=stand.url,
        anonymous=True,
        retry_attempts=1,
        cache_seconds=0,
    )


def test_rolling_a_service_with_a_named_revision_creates_a_new_revision(stand: Handle) -> None:
    before = _create(stand, "orders-v1")
    assert before["template"]["revision"] == "orders-v1"
    adapter = _adapter(stand)
    [consumer] = adapter.list_consumers(SECRET)
    rolled = adapter.roll(consumer, version="2")
    after = requests.get(f"{stand.url}/v2/{NAME}", timeout=10).json()
    assert rolled == after["template"]["revision"] != "orders-v1"
    assert after["latestCreatedRevision"].endswith(f"/revisions/{rolled}")
    ref = after["template"]["containers"][0]["env"][0]["valueSource"]["secretKeyRef"]
    assert ref == {"secret": "api-token", "version": "2"}
    adapter.close()


def test_a_concurrent_deploy_during_a_roll_is_a_conflict_not_an_overwrite(stand: Handle) -> None:
    _create(stand, "orders-v1")
    adapter = _adapter(stand)
    [consumer] = adapter.list_consumers(SECRET)
    real_get = adapter.services.get_service

    def get_then_someone_deploys(*args: Any, **kwargs: Any) -> Any:
        got = real_get(*args, **kwargs)
        current = requests.get(f"{stand.url}/v2/{NAME}", timeout=10).json()
        current["labels"] = {"deployed": "meanwhile"}
        assert requests.patch(f"{stand.url}/v2/{NAME}", json=current, timeout=10).ok
        return got

    adapter.services.get_service = get_then_someone_deploys  # type: ignore[method-assign]
    with pytest.raises(ConflictError) as raised:
        adapter.roll(consumer, version="2")
    assert raised.value.reason == "ABORTED" and raised.value.status == 409
    after = requests.get(f"{stand.url}/v2/{NAME}", timeout=10).json()
    assert after["labels"] == {"deployed": "meanwhile"}
    assert after["template"]["containers"][0]["env"][0]["valueSource"]["secretKeyRef"]["version"] == "1"
    adapter.close()


def _http_error(stand: Handle, status: str) -> gexc.GoogleAPICallError:
    """The exception api_core raises over REST for a 409 with this ``google.rpc.Status`` code."""
    response = requests.Response()
    response.status_code = 409
    response._content = b'{"error": {"code": 409, "message": "no", "status": "' + status.encode() + b'"}}'
    response.request = requests.Request("PATCH", f"{stand.url}/v2/{NAME}").prepare()
    return gexc.from_http_response(response)


def test_the_two_409s_of_an_update_are_told_apart_by_status(stand: Handle) -> None:
    reused = map_update_error(_http_error(stand, "ALREADY_EXISTS"), "update service orders")
    assert isinstance(reused, PermanentError) and not isinstance(reused, ConflictError)
    assert reused.reason == "ALREADY_EXISTS"
    stale = map_update_error(_http_error(stand, "ABORTED"), "update service orders")
    assert isinstance(stale, ConflictError) and stale.reason == "ABORTED"
