"""The IAM v1 and Org Policy v2 stand-ins through Google's discovery-based REST client and through
gatehouse's adapters (``IamKeyAdmin``, ``OrgPolicyReader``).

google-cloud-iam 2.27's ``IAMClient`` has no REST transport (gRPC only), so the official client
used here is googleapiclient's ``build("iam", "v1")``, which is generated from the same discovery
document the stand-in serves."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography import x509
from google.auth import crypt
from google.auth.credentials import AnonymousCredentials
from google.oauth2 import service_account
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError

from gatehouse.adapters.iam import IamKeyAdmin, key_file_bytes
from gatehouse.adapters.orgpolicy import NoOrgPolicies, OrgPolicyReader, expiry_hours
from gatehouse.errors import NotFoundError, PermanentError
from gatehouse.local import processes
from gatehouse.local.standins import iam, orgpolicy
from gatehouse.local.standins.server import Handle
from gatehouse.rotation.ports import KeyPolicy

PROJECT = "app-proj"
EMAIL = f"app-one@{PROJECT}.iam.gserviceaccount.com"
ACCOUNT = f"projects/{PROJECT}/serviceAccounts/{EMAIL}"
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
    handle = iam.start(clock=clock, check_fields=True)
    yield handle
    handle.stop()


@pytest.fixture
def api(stand: Handle) -> Iterator[Any]:
    service = build(
        "iam",
        "v1",
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        static_discovery=True,
        client_options={"api_endpoint": stand.url},
    )
    service.projects().serviceAccounts().create(
        name=f"projects/{PROJECT}", body={"accountId": "app-one", "serviceAccount": {"displayName": "App"}}
    ).execute()
    yield service
    service.close()


@pytest.fixture
def admin(stand: Handle) -> Iterator[IamKeyAdmin]:
    adapter = IamKeyAdmin(endpoint=stand.url, anonymous=True, retry_attempts=2, retry_max_wait=0.05)
    yield adapter
    adapter.close()


def keys(api: Any) -> Any:
    return api.projects().serviceAccounts().keys()


def error_of(exc: HttpError) -> dict[str, Any]:
    return json.loads(exc.content)["error"]  # type: ignore[no-any-return]


# -- keys through the discovery client -------------------------------------------------------------


def test_created_key_is_a_real_key_file_that_signs_and_verifies_against_the_certificate(
    api: Any, clock: Clock
) -> None:
    created = keys(api).create(name=f"projects/-/serviceAccounts/{EMAIL}", body={}).execute()
    key_id = created["name"].rsplit("/", 1)[-1]
    assert created["name"] == f"{ACCOUNT}/keys/{key_id}" and len(key_id) == 40
    assert created["keyType"] == "USER_MANAGED" and created["keyOrigin"] == "GOOGLE_PROVIDED"
    assert created["privateKeyType"] == "TYPE_GOOGLE_CREDENTIALS_FILE"
    assert created["keyAlgorithm"] == "KEY_ALG_RSA_2048"
    assert created["validAfterTime"] == "2025-03-03T08:00:00Z"
    assert created["validBeforeTime"] == iam.NO_EXPIRY
    assert "disabled" not in created  # proto3 JSON leaves false out

    info = json.loads(base64.b64decode(created["privateKeyData"]))
    assert info["type"] == "service_account" and info["client_email"] == EMAIL
    assert info["private_key_id"] == key_id and info["project_id"] == PROJECT
    credentials = service_account.Credentials.from_service_account_info(info)  # type: ignore[no-untyped-call]
    signature = credentials.signer.sign(b"probe")

    got = keys(api).get(name=created["name"], publicKeyType="TYPE_X509_PEM_FILE").execute()
    assert "privateKeyData" not in got
    pem = base64.b64decode(got["publicKeyData"])
    cert = x509.load_pem_x509_certificate(pem)
    assert cert.not_valid_before_utc == T0
    assert crypt.RSAVerifier.from_string(pem).verify(b"probe", signature)  # type: ignore[no-untyped-call]
    assert not crypt.RSAVerifier.from_string(pem).verify(b"other", signature)  # type: ignore[no-untyped-call]
    plain = keys(api).get(name=created["name"]).execute()
    assert "publicKeyData" not in plain  # TYPE_NONE is the default


def test_ten_keys_per_account_and_disabled_keys_count(api: Any) -> None:
    parent = f"projects/-/serviceAccounts/{EMAIL}"
    made = [keys(api).create(name=parent, body={}).execute()["name"] for _ in range(10)]
    with pytest.raises(HttpError) as refused:
        keys(api).create(name=parent, body={}).execute()
    assert refused.value.status_code == 400
    assert error_of(refused.value) == {
        "code": 400,
        "message": "Precondition check failed.",
        "status": "FAILED_PRECONDITION",
    }
    for name in made[:3]:
        assert keys(api).disable(name=name, body={}).execute() == {}
    with pytest.raises(HttpError):  # disabled keys still take a slot
        keys(api).create(name=parent, body={}).execute()
    keys(api).delete(name=made[0]).execute()
    keys(api).create(name=parent, body={}).execute()
    listed = keys(api).list(name=parent, keyTypes="USER_MANAGED").execute()["keys"]
    assert len(listed) == 10
    assert sum(1 for k in listed if k.get("disabled")) == 2
    assert all(k["disableReason"].endswith("USER_INITIATED") for k in listed if k.get("disabled"))
    keys(api).enable(name=made[1]).execute()
    assert sum(1 for k in keys(api).list(name=parent).execute()["keys"] if k.get("disabled")) == 1


def test_listing_without_key_types_includes_the_system_managed_key(api: Any) -> None:
    parent = f"projects/{PROJECT}/serviceAccounts/{EMAIL}"
    keys(api).create(name=parent, body={}).execute()
    every = keys(api).list(name=parent).execute()["keys"]
    assert sorted(k["keyType"] for k in every) == ["SYSTEM_MANAGED", "USER_MANAGED"]
    user = keys(api).list(name=parent, keyTypes=["USER_MANAGED"]).execute()["keys"]
    system = keys(api).list(name=parent, keyTypes=["SYSTEM_MANAGED"]).execute()["keys"]
    assert [k["keyType"] for k in user] == ["USER_MANAGED"] and [k["keyType"] for k in system] == [
        "SYSTEM_MANAGED"
    ]
    with pytest.raises(HttpError) as refused:
        keys(api).delete(name=system[0]["name"]).execute()
    assert refused.value.status_code == 400


def test_missing_keys_are_404_with_a_project_and_403_with_the_wildcard(api: Any) -> None:
    with pytest.raises(HttpError) as exact:
        keys(api).get(name=f"{ACCOUNT}/keys/{'0' * 40}").execute()
    assert exact.value.status_code == 404
    with pytest.raises(HttpError) as wildcard:
        keys(api).delete(name=f"projects/-/serviceAccounts/{EMAIL}/keys/{'0' * 40}").execute()
    assert wildcard.value.status_code == 403 and error_of(wildcard.value)["status"] == "PERMISSION_DENIED"
    with pytest.raises(HttpError) as account:
        keys(api).list(
            name=f"projects/{PROJECT}/serviceAccounts/nobody@{PROJECT}.iam.gserviceaccount.com"
        ).execute()
    assert account.value.status_code == 404


def test_accounts_create_get_list(api: Any) -> None:
    accounts = api.projects().serviceAccounts()
    got = accounts.get(name=f"projects/-/serviceAccounts/{EMAIL}").execute()
    assert got["email"] == EMAIL and got["projectId"] == PROJECT and got["displayName"] == "App"
    assert accounts.get(name=f"projects/-/serviceAccounts/{got['uniqueId']}").execute()["email"] == EMAIL
    with pytest.raises(HttpError) as duplicate:
        accounts.create(name=f"projects/{PROJECT}", body={"accountId": "app-one"}).execute()
    assert duplicate.value.status_code == 409
    with pytest.raises(HttpError) as invalid:
        accounts.create(name=f"projects/{PROJECT}", body={"accountId": "A"}).execute()
    assert invalid.value.status_code == 400
    for n in range(3):
        accounts.create(name=f"projects/{PROJECT}", body={"accountId": f"extra-{n}"}).execute()
    first = accounts.list(name=f"projects/{PROJECT}", pageSize=3).execute()
    second = accounts.list(name=f"projects/{PROJECT}", pageSize=3, pageToken=first["nextPageToken"]).execute()
    assert len(first["accounts"]) == 3 and len(second["accounts"]) == 1 and "nextPageToken" not in second


def test_org_policy_blocks_creation_or_sets_an_expiry(api: Any, stand: Handle, clock: Clock) -> None:
    parent = f"projects/-/serviceAccounts/{EMAIL}"
    hook = stand.url + "/_standin/iam/policy"
    body = {"project": PROJECT, "creation_blocked_by": "iam.disableServiceAccountKeyCreation"}
    assert requests.post(hook, json=body, timeout=10).ok
    with pytest.raises(HttpError) as blocked:
        keys(api).create(name=parent, body={}).execute()
    error = error_of(blocked.value)
    assert error["status"] == "FAILED_PRECONDITION"
    assert error["message"].startswith("Key creation is not allowed on this service account.")
    assert "constraints/iam.disableServiceAccountKeyCreation" in error["message"]
    assert error["details"][0]["violations"][0]["type"] == "constraints/iam.disableServiceAccountKeyCreation"
    assert requests.post(hook, json={"project": PROJECT, "expiry_hours": 24}, timeout=10).ok
    assert requests.get(hook, params={"project": PROJECT}, timeout=10).json() == {
        "project": PROJECT,
        "creation_blocked_by": None,
        "expiry_hours": 24,
    }
    created = keys(api).create(name=parent, body={}).execute()
    assert created["validBeforeTime"] == "2025-03-04T08:00:00Z"
    cert = x509.load_pem_x509_certificate(
        base64.b64decode(
            keys(api).get(name=created["name"], publicKeyType="TYPE_X509_PEM_FILE").execute()["publicKeyData"]
        )
    )
    assert cert.not_valid_after_utc == T0 + timedelta(hours=24)
    assert (
        requests.post(hook, json={"project": PROJECT, "creation_blocked_by": "nope"}, timeout=10).status_code
        == 400
    )


def test_clock_hook_shifts_key_times(api: Any, stand: Handle) -> None:
    assert requests.post(stand.url + "/_standin/clock", json={"offset_seconds": 3600}, timeout=10).ok
    created = keys(api).create(name=f"projects/-/serviceAccounts/{EMAIL}", body={}).execute()
    assert created["validAfterTime"] == "2025-03-03T09:00:00Z"


# -- the adapter ---------------------------------------------------------------------------------


def test_adapter_round_trip(api: Any, admin: IamKeyAdmin, stand: Handle) -> None:
    new = admin.create_service_account_key(EMAIL)
    assert repr(new.private_key_data).startswith("<material:")
    info = json.loads(new.private_key_data.reveal())
    assert info["private_key_id"] == new.key_id
    (listed,) = admin.list_service_account_keys(EMAIL)
    assert listed.key_id == new.key_id and listed.valid_before is None and not listed.disabled
    assert listed.valid_after == T0
    pem = admin.get_public_key(EMAIL, new.key_id)
    assert pem is not None and pem.startswith(b"-----BEGIN CERTIFICATE-----")
    admin.disable_service_account_key(EMAIL, new.key_id)
    assert admin.list_service_account_keys(EMAIL)[0].disabled
    admin.enable_service_account_key(EMAIL, new.key_id)
    admin.delete_service_account_key(EMAIL, new.key_id)
    assert admin.list_service_account_keys(EMAIL) == []
    # 404, not the wildcard's 403: the adapter names the account's project; the executor counts
    # "already gone" as done
    with pytest.raises(NotFoundError):
        admin.delete_service_account_key(EMAIL, new.key_id)


def test_adapter_maps_refusals_to_failed_precondition(api: Any, admin: IamKeyAdmin, stand: Handle) -> None:
    for _ in range(10):
        admin.create_service_account_key(EMAIL)
    with pytest.raises(PermanentError) as full:
        admin.create_service_account_key(EMAIL)
    assert full.value.reason == "FAILED_PRECONDITION" and full.value.status == 400
    assert "Precondition check failed." in str(full.value)
    stand.standin.set_policy(PROJECT, "iam.managed.disableServiceAccountKeyCreation", None)  # type: ignore[attr-defined]
    with pytest.raises(PermanentError) as blocked:
        admin.create_service_account_key(EMAIL)
    assert blocked.value.reason == "FAILED_PRECONDITION"
    assert "iam.managed.disableServiceAccountKeyCreation" in str(blocked.value)


def test_adapter_does_not_retry_key_creation_after_a_5xx(admin: IamKeyAdmin, stand: Handle, api: Any) -> None:
    from gatehouse.errors import TransientError

    faults = {"error_rate": 1.0, "statuses": [503], "routes": ["keys.create"]}
    requests.post(stand.url + "/_standin/faults", json=faults, timeout=10)
    requests.post(stand.url + "/_standin/stats/reset", timeout=10)
    with pytest.raises(TransientError):
        admin.create_service_account_key(EMAIL)
    stats = requests.get(stand.url + "/_standin/stats", timeout=10).json()["methods"]
    assert stats == {"iam.projects.serviceAccounts.keys.create": 1}
    requests.post(stand.url + "/_standin/faults", json={**faults, "statuses": [429]}, timeout=10)
    with pytest.raises(TransientError):
        admin.create_service_account_key(EMAIL)
    stats = requests.get(stand.url + "/_standin/stats", timeout=10).json()["methods"]
    assert stats == {"iam.projects.serviceAccounts.keys.create": 3}  # 429 is retried (twice in all)


def test_key_file_bytes_accepts_rest_and_grpc_shapes() -> None:
    raw = b'{"type": "service_account"}'
    assert key_file_bytes(base64.b64encode(raw).decode()) == raw  # REST: base64 text
    assert key_file_bytes(raw) == raw  # gRPC: the file itself
    with pytest.raises(PermanentError):
        key_file_bytes(base64.b64encode(b"PKCS12...").decode())


# -- org policy ----------------------------------------------------------------------------------


@pytest.fixture
def policies(stand: Handle) -> Iterator[tuple[Handle, OrgPolicyReader]]:
    handle = orgpolicy.start(iam=stand.standin, check_fields=True)
    reader = OrgPolicyReader(endpoint=handle.url, anonymous=True, retry_attempts=1)
    yield handle, reader
    reader.close()
    handle.stop()


def test_org_policy_reader_reads_what_iam_enforces(
    stand: Handle, policies: tuple[Handle, OrgPolicyReader]
) -> None:
    handle, reader = policies
    assert reader.key_policy(PROJECT) == KeyPolicy()
    for constraint in iam.BLOCKING_CONSTRAINTS:
        stand.standin.set_policy(PROJECT, constraint, 168)  # type: ignore[attr-defined]
        assert reader.key_policy(PROJECT) == KeyPolicy(creation_blocked_by=constraint, expiry_hours=168)
    assert requests.post(
        handle.url + "/_standin/orgpolicy/policy", json={"project": PROJECT, "expiry_hours": 8}, timeout=10
    ).ok
    assert stand.standin.policy(PROJECT) == {"creation_blocked_by": None, "expiry_hours": 8}  # type: ignore[attr-defined]
    assert reader.key_policy(PROJECT) == KeyPolicy(expiry_hours=8)
    assert NoOrgPolicies().key_policy(PROJECT) == KeyPolicy()


def test_org_policy_reader_without_permission_relies_on_iam(
    policies: tuple[Handle, OrgPolicyReader], caplog: pytest.LogCaptureFixture
) -> None:
    handle, reader = policies
    requests.post(handle.url + "/_standin/faults", json={"error_rate": 1.0, "statuses": [403]}, timeout=10)
    logging.getLogger("gatehouse").propagate = True
    with caplog.at_level(logging.WARNING, logger="gatehouse"):
        assert reader.key_policy(PROJECT) == KeyPolicy()
    assert "relying on IAM" in caplog.text
    strict = OrgPolicyReader(endpoint=handle.url, anonymous=True, fail_when_unreadable=True)
    with pytest.raises(PermanentError) as denied:
        strict.key_policy(PROJECT)
    assert denied.value.status == 403
    strict.close()


@pytest.mark.parametrize(
    ("rules", "hours"),
    [
        ([{"values": {"allowedValues": ["24h"]}}], 24),
        ([{"values": {"allowedValues": ["2160"]}}], 2160),
        ([{"values": {"allowedValues": ["720h", "8h"]}}], 8),
        ([{"allowAll": True}], None),
        (
            [
                {
                    "values": {"allowedValues": ["8h"]},
                    "condition": {"expression": "resource.matchTag('x', 'y')"},
                }
            ],
            None,
        ),
        ([], None),
    ],
)
def test_expiry_hours_parsing(rules: list[dict[str, Any]], hours: int | None) -> None:
    assert expiry_hours({"spec": {"rules": rules}}) == hours


def test_cli_serves_and_persists_state(tmp_path: Path) -> None:
    state = tmp_path / "iam.json"

    def start(module: str) -> processes.Managed:
        port = processes.free_port()
        argv = [
            "-m",
            f"gatehouse.local.standins.{module}",
            "--port",
            str(port),
            "--state-file",
            str(tmp_path / f"{module}.json"),
        ]
        return processes.start_python(
            f"{module}-standin", argv, port=port, log_dir=tmp_path, ready_path="/_standin/health", timeout=30
        )

    managed = start("iam")
    try:
        requests.post(
            managed.url + "/v1/projects/app-proj/serviceAccounts", json={"accountId": "app-one"}, timeout=10
        ).raise_for_status()
        admin = IamKeyAdmin(endpoint=managed.url, anonymous=True)
        key_id = admin.create_service_account_key(EMAIL).key_id
        admin.close()
    finally:
        processes.stop(managed)
    assert state.exists()
    managed = start("iam")
    try:
        admin = IamKeyAdmin(endpoint=managed.url, anonymous=True)
        assert [k.key_id for k in admin.list_service_account_keys(EMAIL)] == [key_id]
        assert admin.get_public_key(EMAIL, key_id)
        admin.close()
    finally:
        processes.stop(managed)
    policies = start("orgpolicy")
    try:
        body = {"project": PROJECT, "creation_blocked_by": "iam.disableServiceAccountKeyCreation"}
        requests.post(policies.url + "/_standin/orgpolicy/policy", json=body, timeout=10).raise_for_status()
        reader = OrgPolicyReader(endpoint=policies.url, anonymous=True)
        assert reader.key_policy(PROJECT).creation_blocked_by == "iam.disableServiceAccountKeyCreation"
        reader.close()
    finally:
        processes.stop(policies)
    assert not processes.alive(policies.pid)
