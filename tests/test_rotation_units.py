"""The pure pieces of rotation: contract, state encoding, generator, sharding, material, checks."""

from __future__ import annotations

import copy
import pickle
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from rotation_fakes import key_file, rsa_key_pairs

from gatehouse.errors import InputError
from gatehouse.rotation import shard
from gatehouse.rotation.consumers import assess
from gatehouse.rotation.generate import Alphabet, Format, GeneratorSpec, generate, nonconformance
from gatehouse.rotation.material import Material, crc32c
from gatehouse.rotation.ports import ConsumerRef, CredentialRejectedError, VersionState
from gatehouse.rotation.settings import RotationSettings, default_holder, format_duration, parse_duration
from gatehouse.rotation.state import Record, RotationState, read_state, write_state
from gatehouse.rotation.target import Kind, TargetError, parse_target
from gatehouse.rotation.verify import check_generated, check_key_file, key_id_of

SETTINGS = RotationSettings(holder="t")
SA = "app-one@proj-one.iam.gserviceaccount.com"
NAME = "projects/p1/secrets/s1"


# -- material --------------------------------------------------------------------------------------


def test_crc32c_matches_the_castagnoli_check_value() -> None:
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(b"") == 0


def test_material_never_prints() -> None:
    @dataclass
    class Holder:
        payload: Material

    secret = Material(b"hunter2-hunter2-hunter2")
    for shown in (
        repr(secret),
        str(secret),
        f"{secret}",
        f"{secret!r:>40}",
        repr(Holder(secret)),
        str([secret]),
    ):
        assert "hunter2" not in shown and "23 bytes" in shown
    assert secret != Material(b"hunter2-hunter2-hunter2")
    assert secret in [secret]
    assert copy.deepcopy(secret) is secret
    with pytest.raises(TypeError):
        pickle.dumps(secret)
    assert secret.reveal() == b"hunter2-hunter2-hunter2"


# -- the contract ----------------------------------------------------------------------------------


def test_defaults() -> None:
    target = parse_target(NAME, {"gatehouse-rotate": "sa-key"}, {"gatehouse-service-account": SA}, SETTINGS)
    assert target.kind is Kind.SA_KEY and target.account_project == "proj-one"
    assert (target.rotation_period, target.disable_after, target.delete_after) == (
        timedelta(days=90),
        timedelta(days=7),
        timedelta(days=30),
    )
    generated = parse_target(NAME, {"gatehouse-rotate": "generated"}, {}, SETTINGS)
    assert generated.generator == GeneratorSpec(32, Alphabet.ALNUM, Format.TOKEN)


@pytest.mark.parametrize(
    ("email", "project"),
    [
        ("app-one@proj-one.iam.gserviceaccount.com", "proj-one"),
        ("my-project@appspot.gserviceaccount.com", "my-project"),
        ("123456789012-compute@developer.gserviceaccount.com", "123456789012"),
    ],
)
def test_service_account_forms(email: str, project: str) -> None:
    target = parse_target(
        NAME, {"gatehouse-rotate": "sa-key"}, {"gatehouse-service-account": email}, SETTINGS
    )
    assert target.account_project == project


INVALID = [
    ({"gatehouse-rotate": "keys"}, {}, "label gatehouse-rotate='keys': expected one of sa-key, generated"),
    ({"gatehouse-rotate": "sa-key"}, {}, "annotation gatehouse-service-account is required"),
    (
        {"gatehouse-rotate": "sa-key"},
        {"gatehouse-service-account": "someone@example.com"},
        "is not a service account e-mail",
    ),
    (
        {"gatehouse-rotate": "sa-key"},
        {"gatehouse-service-account": "service-1@gcp-sa-pubsub.iam.gserviceaccount.com"},
        "Google-managed service agent",
    ),
    (
        {"gatehouse-rotate": "generated"},
        {"gatehouse-rotation-period": "3 months"},
        "is not a duration like 90d",
    ),
    ({"gatehouse-rotate": "generated"}, {"gatehouse-rotation-period": "12h"}, "between 1d and 3650d"),
    (
        {"gatehouse-rotate": "generated"},
        {"gatehouse-disable-after": "40d", "gatehouse-delete-after": "30d"},
        "gatehouse-delete-after (30d) must not be shorter than gatehouse-disable-after (40d)",
    ),
    (
        {"gatehouse-rotate": "generated"},
        {"gatehouse-rotation-peroid": "90d"},
        "unknown annotation gatehouse-rotation-peroid",
    ),
    (
        {"gatehouse-rotate": "sa-key"},
        {"gatehouse-service-account": SA, "gatehouse-length": "40"},
        "gatehouse-length applies to generated secrets only",
    ),
    (
        {"gatehouse-rotate": "generated"},
        {"gatehouse-service-account": SA},
        "gatehouse-service-account applies to gatehouse-rotate=sa-key only",
    ),
    ({"gatehouse-rotate": "generated"}, {"gatehouse-length": "forty"}, "'forty' is not a whole number"),
    ({"gatehouse-rotate": "generated"}, {"gatehouse-alphabet": "emoji"}, "'emoji' is not one of alnum, hex"),
    ({"gatehouse-rotate": "generated"}, {"gatehouse-format": "pin"}, "'pin' is not one of token, password"),
    (
        {"gatehouse-rotate": "generated"},
        {"gatehouse-length": "20", "gatehouse-alphabet": "hex"},
        "gives 80 bits of entropy; at least 128 are required (length >= 32)",
    ),
    ({"gatehouse-rotate": "generated"}, {"gatehouse-length": "9000"}, "length 9000 is outside 16..4096"),
    (
        {"gatehouse-rotate": "sa-key"},
        {"gatehouse-service-account": SA, "gatehouse-rotation-period": "1d", "gatehouse-delete-after": "30d"},
        "keeps up to 30 retired keys at a 1d period; the account's 10 key slots allow 7",
    ),
]


@pytest.mark.parametrize(("labels", "annotations", "message"), INVALID, ids=[m for *_, m in INVALID])
def test_invalid_contracts_name_the_problem(
    labels: dict[str, str], annotations: dict[str, str], message: str
) -> None:
    with pytest.raises(TargetError) as caught:
        parse_target(NAME, labels, annotations, SETTINGS)
    assert message in str(caught.value)
    assert isinstance(caught.value, InputError)


def test_every_problem_is_listed_at_once() -> None:
    annotations = {"gatehouse-rotation-period": "x", "gatehouse-format": "pin", "gatehouse-foo": "1"}
    with pytest.raises(TargetError) as caught:
        parse_target(NAME, {"gatehouse-rotate": "generated"}, annotations, SETTINGS)
    assert str(caught.value).count(";") >= 2


# -- state annotations -----------------------------------------------------------------------------


def test_state_round_trips_and_leaves_other_annotations_alone() -> None:
    at = datetime(2025, 3, 1, 12, 30, tzinfo=UTC)
    state = RotationState(
        record=Record("r1", "exec-1/0", at, 4, frozenset({"k2", "k1"}), tested=at, rejected=at),
        key_ids={4: "k4", 3: "k3"},
        retired={3: at},
        current_since=at,
        mirrors={5: 3},
    )
    written = write_state({"owner": "team-a", "gatehouse-state-keys": "stale"}, state)
    assert written["owner"] == "team-a"
    assert written["gatehouse-state-keys"] == "3=k3,4=k4"
    assert written["gatehouse-state-mirrors"] == "5=3" and state.copies_of(3) == [5]
    assert written["gatehouse-state-rotation"] == (
        "id=r1;holder=exec-1/0;started=2025-03-01T12:30:00Z;base=4;keys=k1,k2;"
        "tested=2025-03-01T12:30:00Z;rejected=2025-03-01T12:30:00Z"
    )
    assert read_state(written) == state
    assert write_state(written, RotationState()) == {"owner": "team-a"}


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("gatehouse-state-rotation", "id=r1;holder=h"),
        ("gatehouse-state-keys", "three=k3"),
        ("gatehouse-state-retired", "3=2025-13-01T00:00:00Z"),
        ("gatehouse-state-current-since", "2025-01-01T00:00:00"),
        ("gatehouse-state-mirrors", "5=three"),
    ],
)
def test_malformed_state_names_the_annotation(key: str, value: str) -> None:
    with pytest.raises(TargetError, match=key):
        read_state({key: value})


# -- generator -------------------------------------------------------------------------------------


@pytest.mark.parametrize("alphabet", list(Alphabet))
@pytest.mark.parametrize("fmt", list(Format))
def test_generated_values_conform(alphabet: Alphabet, fmt: Format) -> None:
    spec = GeneratorSpec(length=40, alphabet=alphabet, format=fmt)
    values = {generate(spec) for _ in range(50)}
    assert len(values) == 50
    assert all(nonconformance(v, spec) is None for v in values)


def test_password_has_every_class() -> None:
    spec = GeneratorSpec(length=16, alphabet=Alphabet.ASCII_PRINTABLE, format=Format.PASSWORD)
    assert len(spec.classes()) == 4
    for _ in range(200):
        value = generate(spec)
        assert all(set(value) & c for c in spec.classes())
    assert "1 class(es) missing" in (nonconformance("a" * 8 + "B" * 4 + "1" * 4, spec) or "")


def test_nonconformance_never_quotes_the_value() -> None:
    spec = GeneratorSpec(length=32, alphabet=Alphabet.HEX)
    reason = nonconformance("secretvalue-zzzzzzzzzzzzzzzzzzzz", spec)
    assert reason and "secretvalue" not in reason and "outside the hex alphabet" in reason


# -- settings and sharding -------------------------------------------------------------------------


def test_durations() -> None:
    assert parse_duration("90d") == timedelta(days=90)
    assert parse_duration("2w") == timedelta(days=14)
    assert format_duration(timedelta(days=14)) == "14d"
    assert format_duration(timedelta(hours=36)) == "36h"
    for bad in ("90", "d", "-1d", "1.5d", "90 days"):
        with pytest.raises(ValueError, match="not a duration"):
            parse_duration(bad)


def test_settings_from_env() -> None:
    env = {
        "GATEHOUSE_PROJECTS": "p1, p2",
        "GATEHOUSE_ROTATION_JOB_IDENTITY": "rotator@p1.iam.gserviceaccount.com",
        "GATEHOUSE_ROTATION_PERIOD": "30d",
        "GATEHOUSE_ROTATION_ROLL_CONSUMERS": "true",
        "CLOUD_RUN_EXECUTION": "rotate-credentials-abc12",
        "CLOUD_RUN_TASK_INDEX": "3",
    }
    settings = RotationSettings.from_env(env)
    assert settings.projects == ("p1", "p2") and settings.rotation_period == timedelta(days=30)
    assert settings.roll_consumers and not settings.token_exchange
    assert settings.holder == "rotate-credentials-abc12/3"
    assert default_holder({}).startswith("local-")
    with pytest.raises(InputError, match="GATEHOUSE_ROTATION_TOKEN_EXCHANGE: 'maybe' is not true or false"):
        RotationSettings.from_env({"GATEHOUSE_ROTATION_TOKEN_EXCHANGE": "maybe"})
    with pytest.raises(InputError, match="delete_after must not be shorter"):
        RotationSettings.from_env({"GATEHOUSE_ROTATION_DELETE_AFTER": "1d"})


def test_sharding_is_stable_and_complete() -> None:
    names = [f"projects/p/secrets/s{i}" for i in range(300)]
    parts = [shard.select(names, i, 4) for i in range(4)]
    assert sorted(n for part in parts for n in part) == sorted(names)
    assert all(50 < len(p) < 100 for p in parts)
    assert shard.shard_of("projects/p/secrets/s0", 4) == shard.shard_of("projects/p/secrets/s0", 4)
    assert shard.from_env({"CLOUD_RUN_TASK_INDEX": "2", "CLOUD_RUN_TASK_COUNT": "4"}) == (2, 4)
    assert shard.from_env({}) == (0, 1)
    for env in ({"CLOUD_RUN_TASK_INDEX": "4", "CLOUD_RUN_TASK_COUNT": "4"}, {"CLOUD_RUN_TASK_COUNT": "x"}):
        with pytest.raises(InputError):
            shard.from_env(env)


# -- consumers -------------------------------------------------------------------------------------


def test_consumer_assessment() -> None:
    since = datetime(2025, 1, 1, tzinfo=UTC)
    before, after = since - timedelta(days=1), since + timedelta(days=1)

    def ref(via: str, version: str, updated: datetime | None = before, kind: str = "service") -> ConsumerRef:
        return ConsumerRef(kind, "projects/p/locations/l/services/s", "c", via, "X", version, updated)  # type: ignore[arg-type]

    refs = [
        ref("env", "current"),
        ref("env", "current", after),
        ref("env", "2"),
        ref("env", "1"),
        ref("volume", "nope"),
        ref("volume", "previous"),
        ref("env", "latest", kind="job"),
    ]
    states = {1: VersionState.DISABLED, 2: VersionState.ENABLED}
    found = assess(refs, aliases={"current": 2, "previous": 1}, states=states, current_since=since)
    assert [(f.severity, f.roll_to) for f in found] == [
        ("warning", "current"),
        ("ok", None),
        ("info", None),
        ("error", "2"),
        ("error", None),
        ("warning", None),
        ("info", None),
    ]


# -- credential checks -----------------------------------------------------------------------------


def test_key_file_check() -> None:
    key = "a" * 40
    data = Material(key_file(SA, key, pair=0))
    assert key_id_of(data) == key
    check_key_file(data, email=SA, key_id=key, public_key_pem=rsa_key_pairs()[0][1])
    with pytest.raises(CredentialRejectedError, match="does not verify against IAM's public key"):
        check_key_file(data, email=SA, key_id=key, public_key_pem=rsa_key_pairs()[1][1])
    with pytest.raises(CredentialRejectedError, match="not the key"):
        check_key_file(data, email=SA, key_id="b" * 40, public_key_pem=None)
    with pytest.raises(CredentialRejectedError, match="is for"):
        check_key_file(
            data, email="other-one@proj-one.iam.gserviceaccount.com", key_id=key, public_key_pem=None
        )
    with pytest.raises(CredentialRejectedError, match="not a service account JSON key file"):
        check_key_file(Material(b"{not json"), email=SA, key_id=key, public_key_pem=None)
    assert key_id_of(Material(b"[]")) is None


def test_generated_check() -> None:
    spec = GeneratorSpec(length=32, alphabet=Alphabet.HEX)
    value = Material(b"0123456789abcdef" * 2)
    check_generated(value, crc32c(value.reveal()), spec)
    with pytest.raises(CredentialRejectedError, match="CRC32C"):
        check_generated(value, 1, spec)
    with pytest.raises(CredentialRejectedError, match="length is 3"):
        check_generated(Material(b"abc"), None, spec)
