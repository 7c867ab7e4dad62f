"""The fakes behave like the services they stand for (the other rotation tests rely on it)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from google.oauth2 import service_account
from rotation_fakes import Crash, World

from gatehouse.errors import ConflictError, NotFoundError, PermanentError, TransientError
from gatehouse.rotation.material import Material, crc32c
from gatehouse.rotation.ports import KeyPolicy, VersionState

NAME = "projects/p1/secrets/s1"
SA = "app-one@proj-one.iam.gserviceaccount.com"


def world_with_secret() -> World:
    world = World()
    world.sm.create(NAME, {"gatehouse-rotate": "generated"}, {})
    return world


def add(world: World, data: bytes) -> int:
    return world.sm.add_secret_version(NAME, Material(data), crc32c=crc32c(data))


def test_versions_latest_aliases_and_states() -> None:
    world = world_with_secret()
    assert [add(world, b"one"), add(world, b"two"), add(world, b"three")] == [1, 2, 3]
    sm = world.sm
    assert sm.access_secret_version(NAME, "latest").number == 3
    etag = sm.get_secret(NAME).etag
    sm.update_secret(NAME, etag=etag, version_aliases={"current": 2})
    assert sm.access_secret_version(NAME, "current").payload.reveal() == b"two"
    three = next(v for v in sm.list_secret_versions(NAME) if v.number == 3)
    sm.disable_secret_version(NAME, 3, etag=three.etag)
    for ref in ("3", "latest"):  # latest is the newest version whatever its state: no fall-back
        with pytest.raises(PermanentError, match=r"versions/3\] is in DISABLED state") as caught:
            sm.access_secret_version(NAME, ref)
        assert caught.value.reason == "FAILED_PRECONDITION" and not isinstance(caught.value, ConflictError)
    assert sm.access_secret_version(NAME, "current").number == 2
    assert add(world, b"four") == 4 and sm.access_secret_version(NAME, "latest").number == 4
    with pytest.raises(ConflictError):
        sm.destroy_secret_version(NAME, 3, etag=three.etag)  # stale version etag
    three = next(v for v in sm.list_secret_versions(NAME) if v.number == 3)
    sm.destroy_secret_version(NAME, 3, etag=three.etag)
    three = next(v for v in sm.list_secret_versions(NAME) if v.number == 3)
    assert three.state is VersionState.DESTROYED
    with pytest.raises(PermanentError, match="DESTROYED"):
        sm.disable_secret_version(NAME, 3, etag=three.etag)
    four = next(v for v in sm.list_secret_versions(NAME) if v.number == 4)
    sm.destroy_secret_version(NAME, 4, etag=four.etag)
    with pytest.raises(PermanentError, match="DESTROYED state") as caught:
        sm.access_secret_version(NAME, "latest")
    assert caught.value.reason == "FAILED_PRECONDITION"
    with pytest.raises(NotFoundError):
        sm.access_secret_version(NAME, "nope")


def test_secret_etag_changes_on_every_update_and_guards_it() -> None:
    world = world_with_secret()
    add(world, b"one")
    first = world.sm.get_secret(NAME).etag
    second = world.sm.update_secret(NAME, etag=first, annotations={"a": "1"}).etag
    assert second != first
    with pytest.raises(ConflictError):
        world.sm.update_secret(NAME, etag=first, annotations={"a": "2"})
    assert world.sm.get_secret(NAME).annotations == {"a": "1"}


@pytest.mark.parametrize(
    ("aliases", "annotations", "message"),
    [
        ({"latest": 1}, None, "invalid alias"),
        ({"NEW": 1}, None, "invalid alias"),
        ({"current": 9}, None, "does not exist"),
        (None, {"gatehouse.dev/service-account": "x"}, "invalid annotation key"),
        (None, {"big": "x" * 16_384}, "less than 16 KiB"),
    ],
)
def test_update_validation(
    aliases: dict[str, int] | None, annotations: dict[str, str] | None, message: str
) -> None:
    world = world_with_secret()
    add(world, b"one")
    etag = world.sm.get_secret(NAME).etag
    with pytest.raises(PermanentError, match=message):
        world.sm.update_secret(NAME, etag=etag, version_aliases=aliases, annotations=annotations)


def test_payload_limit_and_checksum() -> None:
    world = world_with_secret()
    with pytest.raises(PermanentError, match="limit is 65536"):
        add(world, b"x" * (64 * 1024 + 1))
    with pytest.raises(PermanentError, match="Checksum mismatch"):
        world.sm.add_secret_version(NAME, Material(b"abc"), crc32c=1)
    assert add(world, b"x" * 64 * 1024) == 1
    accessed = world.sm.access_secret_version(NAME, "1")
    assert accessed.crc32c == crc32c(accessed.payload.reveal())


def test_the_eleventh_key_fails_and_disabled_keys_count() -> None:
    world = World()
    for _ in range(9):
        world.iam.seed_key(SA, world.clock.now())
    new = world.iam.create_service_account_key(SA)
    world.iam.disable_service_account_key(SA, new.key_id)
    with pytest.raises(PermanentError, match=r"^Precondition check failed\.$") as caught:
        world.iam.create_service_account_key(SA)
    assert caught.value.status == 400 and caught.value.reason == "FAILED_PRECONDITION"
    world.iam.delete_service_account_key(SA, new.key_id)
    with pytest.raises(NotFoundError):
        world.iam.delete_service_account_key(SA, new.key_id)


def test_key_files_load_in_google_auth_and_policies_apply() -> None:
    world = World()
    world.policies.by_project["proj-one"] = KeyPolicy(expiry_hours=720)
    new = world.iam.create_service_account_key(SA)
    info = json.loads(new.private_key_data.reveal())
    credentials = service_account.Credentials.from_service_account_info(info)
    assert credentials.service_account_email == SA and credentials.signer.sign(b"probe")
    (listed,) = world.iam.list_service_account_keys(SA)
    assert listed.valid_before == listed.valid_after + timedelta(hours=720)
    world.policies.by_project["proj-one"] = KeyPolicy(
        creation_blocked_by="iam.disableServiceAccountKeyCreation"
    )
    with pytest.raises(PermanentError) as caught:
        world.iam.create_service_account_key(SA)
    assert caught.value.reason == "FAILED_PRECONDITION"


def test_fault_injection() -> None:
    world = world_with_secret()
    world.faults.fail_nth.add(("add_secret_version", 2))
    add(world, b"one")
    with pytest.raises(TransientError):
        add(world, b"two")
    assert add(world, b"three") == 2, "a failure before the effect changes nothing"
    world.faults.crash_after_write = 3
    with pytest.raises(Crash):
        add(world, b"four")
    assert world.secret(NAME).versions[3].payload == b"four", "a crash after the call keeps its effect"
