"""The rotation job with the REAL adapters against the stand-ins: Secret Manager, IAM, Org Policy
and Cloud Run (services and jobs), all served in this process and reached over HTTP through the
same clients production uses. The fakes in rotation_fakes.py test the planner's corner cases; this
file proves the adapters keep the contract of shared/gatehouse/rotation/ports.py end to end, including under
injected 503/429 faults, and that no key or generated value reaches any output."""

from __future__ import annotations

import base64
import io
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from google.api_core.client_options import ClientOptions
from google.auth import exceptions as auth_exceptions
from google.auth import transport as google_transport
from google.auth.credentials import AnonymousCredentials
from google.cloud import secretmanager
from rotation_fakes import FakeClock, key_file

from gatehouse.adapters.consumers import CloudRunConsumers
from gatehouse.adapters.iam import IamKeyAdmin
from gatehouse.adapters.orgpolicy import NoOrgPolicies, OrgPolicyReader
from gatehouse.adapters.secretmanager import SecretManagerStore
from gatehouse.adapters.tokens import GoogleTokenExchange
from gatehouse.errors import NotFoundError, TransientError
from gatehouse.local.standins import cloudrun, iam, orgpolicy
from gatehouse.local.standins import secretmanager as sm_standin
from gatehouse.local.standins.server import Handle, serve
from gatehouse.rotation.generate import GeneratorSpec, nonconformance
from gatehouse.rotation.job import run
from gatehouse.rotation.material import Material, crc32c
from gatehouse.rotation.ports import CredentialRejectedError, NewKey, OrgPolicies, RotationPorts
from gatehouse.rotation.report import RunReport, render_json, render_markdown
from gatehouse.rotation.settings import RotationSettings
from gatehouse.rotation.state import read_state
from gatehouse.rotation.verify import check_key_file

PROJECT, NUMBER, REGION = "app-proj", "123456789012", "europe-west1"
JOB = f"rotator@{PROJECT}.iam.gserviceaccount.com"
SA = f"app-one@{PROJECT}.iam.gserviceaccount.com"
KEY = f"projects/{NUMBER}/secrets/app-one-key"
TOKEN = f"projects/{NUMBER}/secrets/api-token"
SERVICE = f"projects/{PROJECT}/locations/{REGION}/services/orders"
JOB_NAME = f"projects/{PROJECT}/locations/{REGION}/jobs/nightly"
T0 = datetime.now(UTC).replace(microsecond=0)  # Cloud Run's stand-in stamps updateTime with the real clock
WRITES = {
    "secretmanager.projects.secrets.addVersion",
    "secretmanager.projects.secrets.patch",
    "secretmanager.projects.secrets.versions.disable",
    "secretmanager.projects.secrets.versions.destroy",
    "iam.projects.serviceAccounts.keys.create",
    "iam.projects.serviceAccounts.keys.disable",
    "iam.projects.serviceAccounts.keys.delete",
}


class SpyStore(SecretManagerStore):
    """Records every payload stored, so the leak scan knows what must never be printed."""

    def __init__(self, stored: list[bytes], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.stored = stored

    def add_secret_version(self, name: str, payload: Material, *, crc32c: int) -> int:
        self.stored.append(payload.reveal())
        return super().add_secret_version(name, payload, crc32c=crc32c)


class SpyKeys(IamKeyAdmin):
    def __init__(self, stored: list[bytes], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.stored = stored

    def create_service_account_key(self, email: str) -> NewKey:
        new = super().create_service_account_key(email)
        self.stored.append(new.private_key_data.reveal())
        return new


@dataclass
class Env:
    clock: FakeClock
    iam: Handle
    org: Handle
    sm: Handle
    run: Handle
    client: secretmanager.SecretManagerServiceClient
    stored: list[bytes] = field(default_factory=list)
    reports: list[RunReport] = field(default_factory=list)
    runs: int = 0
    retry_attempts: int = 4

    def ports(self, *, policies: OrgPolicies | None = None, retry_max_wait: float = 0.05) -> RotationPorts:
        common: dict[str, Any] = {
            "anonymous": True,
            "retry_attempts": self.retry_attempts,
            "retry_max_wait": retry_max_wait,
        }
        return RotationPorts(
            secrets=SpyStore(self.stored, endpoint=self.sm.url, **common),
            keys=SpyKeys(self.stored, endpoint=self.iam.url, **common),
            policies=policies or OrgPolicyReader(endpoint=self.org.url, **common),
            clock=self.clock,
            consumers=CloudRunConsumers(
                [PROJECT],
                [REGION],
                project_numbers={PROJECT: NUMBER},
                endpoint=self.run.url,
                cache_seconds=0,
                **common,
            ),
        )

    def run_job(
        self, *, policies: OrgPolicies | None = None, secret: str | None = None, **changes: Any
    ) -> RunReport:
        self.runs += 1
        settings = replace(
            RotationSettings(projects=(PROJECT,), job_identity=JOB, holder=f"exec-{self.runs}/0"), **changes
        )
        report = run(self.ports(policies=policies), settings, secret=secret)
        self.reports.append(report)
        return report

    # -- seeding and inspection through the stand-ins ---------------------------------------------

    def secret(
        self, secret_id: str, labels: dict[str, str], annotations: dict[str, str] | None = None
    ) -> str:
        created = self.client.create_secret(
            parent=f"projects/{PROJECT}",
            secret_id=secret_id,
            secret={"replication": {"automatic": {}}, "labels": labels, "annotations": annotations or {}},
        )
        return str(created.name)

    def sa_key_target(self, secret_id: str, email: str) -> str:
        self.iam.standin.add_account(email)  # type: ignore[attr-defined]
        return self.secret(secret_id, {"gatehouse-rotate": "sa-key"}, {"gatehouse-service-account": email})

    def aliases(self, name: str) -> dict[str, int]:
        return dict(self.client.get_secret(name=name).version_aliases)

    def states(self, name: str) -> dict[int, str]:
        return {
            int(v.name.rsplit("/", 1)[-1]): v.state.name
            for v in self.client.list_secret_versions(parent=name)
        }

    def payload(self, name: str, version: str) -> bytes:
        return bytes(self.client.access_secret_version(name=f"{name}/versions/{version}").payload.data)

    def user_keys(self, email: str) -> dict[str, dict[str, Any]]:
        return self.iam.standin.user_keys(email)  # type: ignore[attr-defined,no-any-return]

    def methods(self, handle: Handle) -> dict[str, int]:
        return requests.get(handle.url + "/_standin/stats", timeout=10).json()["methods"]  # type: ignore[no-any-return]

    def writes(self) -> int:
        return sum(n for h in (self.sm, self.iam) for m, n in self.methods(h).items() if m in WRITES)

    def faults(self, rate: float, seed: int = 11) -> None:
        for handle in (self.sm, self.iam):
            if rate:
                spec = {"error_rate": rate, "statuses": [503, 429], "seed": seed}
                assert requests.post(handle.url + "/_standin/faults", json=spec, timeout=10).ok
            else:
                requests.delete(handle.url + "/_standin/faults", timeout=10)

    def valid_current(self, name: str, email: str | None) -> str | None:
        """Why ``current`` is not a working credential (None when it is)."""
        current = self.aliases(name).get("current")
        if current is None:
            return "no current alias"
        if self.states(name).get(current) != "ENABLED":
            return f"current version {current} is not enabled"
        data = self.payload(name, str(current))
        if email is None:
            return nonconformance(data.decode("ascii"), GeneratorSpec())
        info = json.loads(data)
        key = self.user_keys(email).get(info["private_key_id"])
        if key is None or key["disabled"]:
            return f"key of version {current} is missing or disabled"
        pem = base64.b64decode(
            requests.get(
                f"{self.iam.url}/v1/projects/{PROJECT}/serviceAccounts/{email}/keys/{info['private_key_id']}",
                params={"publicKeyType": "TYPE_X509_PEM_FILE"},
                timeout=10,
            ).json()["publicKeyData"]
        )
        check_key_file(Material(data), email=email, key_id=info["private_key_id"], public_key_pem=pem)
        return None


@pytest.fixture
def env() -> Iterator[Env]:
    clock = FakeClock(T0)
    iam_handle = iam.start(clock=clock.now)
    handles = {
        "iam": iam_handle,
        "org": orgpolicy.start(iam=iam_handle.standin),
        "sm": sm_standin.start(clock=clock.now, project_numbers={PROJECT: NUMBER}),
        "run": serve(cloudrun.CloudRun(project_numbers={PROJECT: NUMBER})),
    }
    client = secretmanager.SecretManagerServiceClient(
        transport="rest",
        client_options=ClientOptions(api_endpoint=handles["sm"].url),
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
    )
    yield Env(clock=clock, client=client, **handles)
    client.transport.close()
    for handle in handles.values():
        handle.stop()


def consumers(env: Env) -> None:
    """A service pinning version 1 in an env var (short id) and a job mounting latest (full name)."""
    parent = f"{env.run.url}/v2/projects/{PROJECT}/locations/{REGION}"
    service = {
        "template": {
            "containers": [
                {
                    "name": "app",
                    "image": "europe-docker.pkg.dev/app-proj/apps/orders:1",
                    "env": [
                        {"name": "MODE", "value": "live"},
                        {
                            "name": "SA_KEY",
                            "valueSource": {"secretKeyRef": {"secret": "app-one-key", "version": "1"}},
                        },
                    ],
                }
            ]
        }
    }
    assert requests.post(f"{parent}/services", params={"serviceId": "orders"}, json=service, timeout=10).ok
    job = {
        "template": {
            "template": {
                "containers": [
                    {
                        "image": "europe-docker.pkg.dev/app-proj/jobs/nightly:1",
                        "volumeMounts": [{"name": "sa", "mountPath": "/secrets"}],
                    }
                ],
                "volumes": [
                    {
                        "name": "sa",
                        "secret": {
                            "secret": f"projects/{PROJECT}/secrets/app-one-key",
                            "items": [{"path": "key.json", "version": "latest"}],
                        },
                    },
                    {"name": "unmounted", "secret": {"secret": "app-one-key"}},
                ],
            }
        }
    }
    assert requests.post(f"{parent}/jobs", params={"jobId": "nightly"}, json=job, timeout=10).ok


def statuses(report: RunReport) -> dict[str, str]:
    return {t.secret: t.status for t in report.targets}


def target(report: RunReport, name: str) -> Any:
    return next(t for t in report.targets if t.secret == name)


# -- the lifecycle ---------------------------------------------------------------------------------


def test_rotation_lifecycle_with_real_adapters(
    env: Env, caplog: pytest.LogCaptureFixture, capsys: Any
) -> None:
    with leak_capture(caplog) as captured:
        env.sa_key_target("app-one-key", SA)
        env.secret("api-token", {"gatehouse-rotate": "generated"})
        consumers(env)

        first = env.run_job()
        assert statuses(first) == {KEY: "rotated", TOKEN: "rotated"}, [
            (t.secret, t.reason) for t in first.targets
        ]
        assert first.exit_code == 0
        assert env.aliases(KEY) == {"current": 1} and env.aliases(TOKEN) == {"current": 1}
        assert env.valid_current(KEY, SA) is None and env.valid_current(TOKEN, None) is None
        assert len(env.user_keys(SA)) == 1
        rows = {(c.kind, c.via, c.detail, c.version) for c in target(first, KEY).consumers}
        assert rows == {
            ("service", "env", "SA_KEY", "1"),
            ("job", "volume", "/secrets/key.json", "latest"),
        }
        assert target(first, TOKEN).consumers == ()

        writes = env.writes()
        second = env.run_job()
        assert set(statuses(second).values()) == {"unchanged"}
        assert env.writes() == writes, "a second run in a row writes nothing"

        env.clock.advance(timedelta(days=91))
        third = env.run_job(roll_consumers=True)
        assert statuses(third) == {KEY: "rotated", TOKEN: "rotated"}
        assert env.aliases(KEY) == {"current": 2, "previous": 1}
        assert env.valid_current(KEY, SA) is None and env.valid_current(TOKEN, None) is None
        service_row = next(c for c in target(third, KEY).consumers if c.kind == "service")
        assert (
            service_row.severity == "warning"
            and service_row.rolled
            and service_row.rolled.startswith("orders-")
        )
        service = requests.get(f"{env.run.url}/v2/{SERVICE}", timeout=10).json()
        refs = [e for e in service["template"]["containers"][0]["env"] if e["name"] == "SA_KEY"]
        assert refs[0]["valueSource"]["secretKeyRef"] == {"secret": "app-one-key", "version": "2"}
        assert service["template"]["containers"][0]["env"][0] == {"name": "MODE", "value": "live"}
        job = requests.get(f"{env.run.url}/v2/{JOB_NAME}", timeout=10).json()
        assert job["generation"] == "1", "a job reading latest through a volume needs no roll"

        env.clock.advance(timedelta(days=8))  # grace 1 (7d) over: disable the old version and key
        fourth = env.run_job()
        assert statuses(fourth)[KEY] == "maintained"
        assert env.states(KEY) == {2: "ENABLED", 1: "DISABLED"}
        assert sorted(k["disabled"] for k in env.user_keys(SA).values()) == [False, True]

        env.clock.advance(timedelta(days=31))  # grace 2 (30d) over: delete the key, destroy the version
        fifth = env.run_job()
        assert statuses(fifth)[KEY] == "maintained"
        assert env.states(KEY) == {2: "ENABLED", 1: "DESTROYED"}
        assert len(env.user_keys(SA)) == 1 and env.valid_current(KEY, SA) is None
        assert set(statuses(env.run_job()).values()) == {"unchanged"}
    assert_no_leak(env, captured, capsys)


def test_a_delayed_destroy_is_read_as_scheduled_and_requested_once(env: Env) -> None:
    """versionDestroyTtl: the adapter reads scheduledDestroyTime, so the version counts as destroyed
    (DISABLED until then) and no second destroy is requested; it is forgotten once DESTROYED."""
    created = env.client.create_secret(
        parent=f"projects/{PROJECT}",
        secret_id="api-token",
        secret={
            "replication": {"automatic": {}},
            "labels": {"gatehouse-rotate": "generated"},
            "version_destroy_ttl": timedelta(days=1),
        },
    )
    assert statuses(env.run_job()) == {TOKEN: "rotated"}  # the first version
    env.clock.advance(timedelta(days=91))
    assert statuses(env.run_job()) == {TOKEN: "rotated"}  # 2 current, 1 previous
    env.clock.advance(timedelta(days=31))
    destroyed = env.run_job()
    assert statuses(destroyed) == {TOKEN: "maintained"}, target(destroyed, TOKEN).reason
    assert env.states(created.name) == {2: "ENABLED", 1: "DISABLED"}
    row = next(v for v in target(destroyed, TOKEN).versions if v.number == 1)
    assert row.scheduled_destroy == env.clock.now() + timedelta(days=1)
    writes = env.writes()
    assert set(statuses(env.run_job()).values()) == {"unchanged"}
    assert env.writes() == writes
    env.clock.advance(timedelta(days=2))
    assert statuses(env.run_job()) == {TOKEN: "maintained"}  # forgotten
    assert env.states(created.name) == {2: "ENABLED", 1: "DESTROYED"}
    assert not read_state(env.client.get_secret(name=created.name).annotations).retired


class RejectOnce:
    """A token exchange that refuses the first key it is shown for good, then accepts."""

    def __init__(self) -> None:
        self.calls = 0

    def exchange(self, key_file: Material) -> None:
        self.calls += 1
        if self.calls == 1:
            raise CredentialRejectedError("invalid_grant: Invalid JWT Signature.")


def test_a_rejected_key_is_abandoned_behind_a_copy_so_latest_stays_readable(env: Env) -> None:
    """The stand-in resolves ``latest`` as Google does (the newest version, whatever its state)."""
    env.sa_key_target("app-one-key", SA)
    assert statuses(env.run_job(secret=KEY)) == {KEY: "rotated"}
    env.clock.advance(timedelta(days=91))
    tokens = RejectOnce()
    ports = replace(env.ports(), token_exchange=tokens)
    settings = RotationSettings(projects=(PROJECT,), job_identity=JOB, holder="exec-r/0", token_exchange=True)

    rejected = run(ports, settings, secret=KEY)
    assert statuses(rejected) == {KEY: "failed"} and "invalid_grant" in target(rejected, KEY).reason
    assert env.aliases(KEY) == {"current": 1}
    assert env.states(KEY) == {3: "ENABLED", 2: "DISABLED", 1: "ENABLED"}
    latest = env.client.access_secret_version(name=f"{KEY}/versions/latest")
    assert latest.name.endswith("/versions/3") and bytes(latest.payload.data) == env.payload(KEY, "1")
    state = read_state(dict(env.client.get_secret(name=KEY).annotations))
    assert state.mirrors == {3: 1} and state.key_ids[3] == state.key_ids[1]
    assert list(env.user_keys(SA)) == [state.key_ids[1]], "the rejected key was deleted"

    healed = run(ports, replace(settings, holder="exec-s/0"), secret=KEY)
    assert statuses(healed) == {KEY: "rotated"} and tokens.calls == 2
    assert env.aliases(KEY) == {"current": 4, "previous": 1}
    assert env.client.access_secret_version(name=f"{KEY}/versions/latest").name.endswith("/versions/4")
    assert set(read_state(dict(env.client.get_secret(name=KEY).annotations)).retired) == {1, 2, 3}
    env.clock.advance(timedelta(days=8))
    assert statuses(env.run_job(secret=KEY)) == {KEY: "maintained"}
    assert env.states(KEY) == {4: "ENABLED", 3: "DISABLED", 2: "DISABLED", 1: "DISABLED"}
    assert env.valid_current(KEY, SA) is None


def test_refused_when_the_account_already_has_nine_keys(env: Env) -> None:
    email = f"app-two@{PROJECT}.iam.gserviceaccount.com"
    name = env.sa_key_target("app-two-key", email)
    admin = IamKeyAdmin(endpoint=env.iam.url, anonymous=True)
    for _ in range(9):
        admin.create_service_account_key(email)
    admin.close()
    before = env.methods(env.iam).get("iam.projects.serviceAccounts.keys.create", 0)
    report = env.run_job()
    t = target(report, name)
    assert t.status == "refused" and report.exit_code == 1
    assert "9 of 10 user-managed keys" in t.reason
    assert env.methods(env.iam).get("iam.projects.serviceAccounts.keys.create", 0) == before
    assert len(env.user_keys(email)) == 9


def test_refused_when_an_org_policy_blocks_key_creation(env: Env) -> None:
    env.sa_key_target("app-one-key", SA)
    env.iam.standin.set_policy(PROJECT, "iam.managed.disableServiceAccountKeyCreation", None)  # type: ignore[attr-defined]

    read = env.run_job()  # the reader sees the policy: refused before IAM is asked
    assert target(read, KEY).status == "refused"
    assert "iam.managed.disableServiceAccountKeyCreation" in target(read, KEY).reason
    assert "workload identity" in target(read, KEY).reason
    assert "iam.projects.serviceAccounts.keys.create" not in env.methods(env.iam)

    blind = env.run_job(policies=NoOrgPolicies())  # reader off: IAM's FAILED_PRECONDITION says it
    t = target(blind, KEY)
    assert t.status == "refused" and "FAILED_PRECONDITION" in t.reason and "workload identity" in t.reason
    assert any("constraints/iam.managed.disableServiceAccountKeyCreation" in a.detail for a in t.actions)
    assert env.methods(env.iam)["iam.projects.serviceAccounts.keys.create"] == 1
    assert read_state(dict(env.client.get_secret(name=KEY).annotations)).record is None
    assert env.user_keys(SA) == {}


def test_converges_under_injected_faults(env: Env, caplog: pytest.LogCaptureFixture, capsys: Any) -> None:
    with leak_capture(caplog) as captured:
        env.sa_key_target("app-one-key", SA)
        env.secret("api-token", {"gatehouse-rotate": "generated"})
        consumers(env)
        env.faults(0.2)
        env.retry_attempts = 2  # so that some faults outlast the in-process retries

        def converge(limit: int = 60) -> int:
            for attempt in range(1, limit + 1):
                report = env.run_job()
                if (
                    not report.errors
                    and set(statuses(report).values()) == {"unchanged"}
                    and len(report.targets) == 2
                ):
                    return attempt
                env.clock.advance(timedelta(hours=1))
            pytest.fail("no convergence under faults")

        first = converge()
        env.clock.advance(timedelta(days=91))
        second = converge()
        env.clock.advance(timedelta(days=40))
        third = converge()
        env.faults(0)
        assert env.valid_current(KEY, SA) is None and env.valid_current(TOKEN, None) is None
        assert len(env.user_keys(SA)) <= 2  # current, plus at most an orphan being cleaned up
        assert env.states(KEY)[env.aliases(KEY)["current"]] == "ENABLED"
        retried = [r for r in captured.records.records if r.getMessage() == "transient failure; will retry"]
        assert retried, "faults were injected and retried in-process"
        surfaced = "\n".join(render_json(r) for r in env.reports)
        assert "injected by stand-in" in surfaced, "some outlasted the retries and reached the report"
        assert first + second + third > 3, "the faults cost at least one extra run"
    assert_no_leak(env, captured, capsys)


# -- the leak scan ---------------------------------------------------------------------------------


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@dataclass
class Captured:
    records: _Records
    stream: io.StringIO


class leak_capture:  # noqa: N801 - used as a context manager like a function
    """Everything at DEBUG, as in a process whose logging is turned all the way up: the root logger,
    ``google`` (which google-auth leaves silent unless configured) and ``gatehouse``."""

    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        self.caplog = caplog
        self.handler = _Records()
        self.stream = io.StringIO()
        self.saved: list[tuple[logging.Logger, int, bool]] = []

    def __enter__(self) -> Captured:
        self.caplog.set_level(logging.DEBUG)
        stream_handler = logging.StreamHandler(self.stream)
        stream_handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.handlers: list[logging.Handler] = [self.handler, stream_handler]
        # handlers on ``google`` and ``gatehouse`` themselves: both may stop propagating (google-auth
        # turns propagation off unless ``google`` is configured; gatehouse.logging.configure too)
        for name in ("", "google", "gatehouse", "urllib3"):
            logger = logging.getLogger(name)
            self.saved.append((logger, logger.level, logger.propagate))
            logger.setLevel(logging.DEBUG)
            if name != "urllib3":
                for handler in self.handlers:
                    logger.addHandler(handler)
        return Captured(self.handler, self.stream)

    def __exit__(self, *exc: object) -> None:
        for logger, level, propagate in self.saved:
            for handler in self.handlers:
                logger.removeHandler(handler)
            logger.setLevel(level)
            logger.propagate = propagate


def fragments(stored: list[bytes]) -> set[str]:
    """Pieces of every stored credential that must never be printed: runs of each private key's
    PEM body and of each generated value, raw and as the base64 REST bodies carry them."""
    out: set[str] = set()
    for data in stored:
        text = data.decode("utf-8", "replace")
        try:
            info = json.loads(text)
        except ValueError:
            info = None
        if isinstance(info, dict) and "private_key" in info:
            body = "".join(line for line in info["private_key"].splitlines() if "-----" not in line)
            out |= {body[i : i + 16] for i in range(0, len(body) - 16, 48)}
            as_sent = base64.b64encode(data).decode()
            out |= {as_sent[i : i + 24] for i in range(0, len(as_sent) - 24, 200)}
            out.add(json.dumps(info["private_key"])[1:40])  # the JSON-escaped form
        else:
            out |= {text[i : i + 12] for i in range(0, max(1, len(text) - 12), 6)}
            as_sent = base64.b64encode(data).decode()  # how REST bodies carry it
            out |= {as_sent[i : i + 16] for i in range(0, max(1, len(as_sent) - 16), 4)}
    return {f for f in out if len(f) >= 12}


def assert_no_leak(env: Env, captured: Captured, capsys: Any) -> None:
    assert env.stored, "the spies saw the material"
    out = capsys.readouterr()
    texts = [out.out, out.err, captured.stream.getvalue()]
    texts += [repr(vars(r)) + r.getMessage() for r in captured.records.records]
    for report in env.reports:
        texts += [render_json(report), render_markdown(report), repr(report)]
    blob = "\n".join(texts)
    assert len(captured.records.records) > 0, "the scan saw log records"
    leaked = sum(1 for f in fragments(env.stored) if f in blob)
    assert leaked == 0, "credential fragments leaked (not printed here, for the same reason)"
    assert not re.search(r"-----BEGIN [A-Z ]*PRIVATE KEY-----", blob)


def test_the_leak_scan_would_catch_a_debug_logged_payload(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    """Sanity of the scan, and why the adapters pin the client's loggers: at DEBUG the REST
    transport logs AddSecretVersion's request body, i.e. the payload (base64)."""
    name = env.secret("api-token", {"gatehouse-rotate": "generated"})
    store = SecretManagerStore(endpoint=env.sm.url, anonymous=True)
    value = b"Zq8TbN3xLp0VwR6yHc2JdK5mFs9GtA1u"
    transport_logger = logging.getLogger(
        "google.cloud.secretmanager_v1.services.secret_manager_service.transports.rest"
    )
    with leak_capture(caplog) as captured:
        store.add_secret_version(name, Material(b"pinned: not logged"), crc32c=crc32c(b"pinned: not logged"))
        assert not any(
            f in repr(vars(r)) for r in captured.records.records for f in fragments([b"pinned: not logged"])
        )
        transport_logger.setLevel(logging.DEBUG)  # someone overrides the pin on purpose
        try:
            store.add_secret_version(name, Material(value), crc32c=crc32c(value))
        finally:
            transport_logger.setLevel(logging.NOTSET)
        leaked = "\n".join(repr(vars(r)) for r in captured.records.records)
    store.close()
    assert any(f in leaked for f in fragments([value]))


# -- the token exchange (google-auth against a scripted token endpoint) ---------------------------


class TokenEndpoint:
    """A ``google.auth.transport.Request`` answering the token endpoint from a script."""

    def __init__(self, *answers: tuple[int, dict[str, Any]] | Exception) -> None:
        self.answers = list(answers)
        self.calls = 0

    def __call__(
        self, url: str, method: str = "GET", body: Any = None, headers: Any = None, **kwargs: Any
    ) -> Any:
        self.calls += 1
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        status, data = answer

        class Response(google_transport.Response):
            @property
            def status(self) -> int:
                return status

            @property
            def headers(self) -> dict[str, str]:
                return {"content-type": "application/json"}

            @property
            def data(self) -> bytes:
                return json.dumps(data).encode()

        return Response()


OK_TOKEN = (200, {"access_token": "ya29.not-a-real-token", "expires_in": 3599, "token_type": "Bearer"})
BAD_SIGNATURE = (400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."})


def exchange(
    *answers: tuple[int, dict[str, Any]] | Exception, wait: float = 60.0
) -> tuple[TokenEndpoint, list[float]]:
    endpoint = TokenEndpoint(*answers)
    slept: list[float] = []
    now = [0.0]

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    tokens = GoogleTokenExchange(
        request=endpoint, propagation_wait=wait, sleep=sleep, monotonic=lambda: now[0]
    )
    tokens.exchange(Material(key_file(SA, "k" * 40)))
    return endpoint, slept


def test_token_exchange_succeeds_and_waits_out_propagation() -> None:
    endpoint, slept = exchange(OK_TOKEN)
    assert endpoint.calls == 1 and slept == []
    endpoint, slept = exchange(BAD_SIGNATURE, BAD_SIGNATURE, OK_TOKEN)
    assert endpoint.calls == 3 and slept == [2.0, 4.0]


def test_token_exchange_rejects_for_good_after_the_propagation_wait() -> None:
    with pytest.raises(CredentialRejectedError) as rejected:
        exchange(BAD_SIGNATURE, wait=30)
    assert "invalid_grant: Invalid JWT Signature." in str(rejected.value) and "after waiting 30s" in str(
        rejected.value
    )
    assert rejected.value.__cause__ is None and rejected.value.__suppress_context__
    with pytest.raises(CredentialRejectedError, match="invalid_client"):
        exchange((401, {"error": "invalid_client", "error_description": "The OAuth client was not found."}))


def test_token_exchange_transient_failures(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("google.auth._exponential_backoff.time.sleep", lambda seconds: None)
    with pytest.raises(TransientError, match="unavailable"):
        exchange((503, {"error": "server_error"}))
    with pytest.raises(TransientError, match="unreachable"):
        exchange(auth_exceptions.TransportError("connection refused"))
    skew = (
        400,
        {
            "error": "invalid_grant",
            "error_description": (
                "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable "
                "timeframe. Check your iat and exp values in the JWT claim."
            ),
        },
    )
    with pytest.raises(TransientError, match="clock"):
        exchange(skew)


def test_token_exchange_never_shows_the_key() -> None:
    tokens = GoogleTokenExchange(request=TokenEndpoint(OK_TOKEN))
    with pytest.raises(CredentialRejectedError) as broken:
        tokens.exchange(
            Material(b'{"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----\\nMIIEv')
        )
    assert "MIIEv" not in str(broken.value) and broken.value.__context__ is None
    data = key_file(SA, "k" * 40)
    with pytest.raises(CredentialRejectedError) as rejected:
        GoogleTokenExchange(request=TokenEndpoint(BAD_SIGNATURE), propagation_wait=0).exchange(Material(data))
    assert not any(f in str(rejected.value) for f in fragments([data]))


# -- the consumers adapter on its own -------------------------------------------------------------


def test_consumers_adapter_pages_matches_every_reference_form_and_rolls(env: Env) -> None:
    consumers(env)
    parent = f"{env.run.url}/v2/projects/{PROJECT}/locations/{REGION}"

    def service(
        service_id: str, env_vars: list[dict[str, Any]], volumes: tuple[dict[str, Any], ...] = ()
    ) -> None:
        mounts = [{"name": v["name"], "mountPath": f"/mnt/{v['name']}"} for v in volumes]
        body = {
            "template": {
                "containers": [
                    {
                        "image": "europe-docker.pkg.dev/app-proj/apps/x:1",
                        "env": env_vars,
                        "volumeMounts": mounts,
                    }
                ],
                "volumes": list(volumes),
            }
        }
        assert requests.post(f"{parent}/services", params={"serviceId": service_id}, json=body, timeout=10).ok

    def ref(name: str, secret: str, version: str = "") -> dict[str, Any]:
        selector = {"secret": secret, **({"version": version} if version else {})}
        return {"name": name, "valueSource": {"secretKeyRef": selector}}

    service("by-number", [ref("A", f"projects/{NUMBER}/secrets/app-one-key", "current")])
    service(
        "other-project", [ref("B", "projects/elsewhere/secrets/app-one-key", "1")]
    )  # same id, other project
    service("whole", [], ({"name": "key", "secret": {"secret": "app-one-key"}},))  # no items: latest
    service("no-version", [ref("C", "app-one-key")])
    adapter = CloudRunConsumers(
        [PROJECT],
        [REGION],
        project_numbers={PROJECT: NUMBER},
        endpoint=env.run.url,
        anonymous=True,
        page_size=1,
    )
    found = {(c.name.rsplit("/", 1)[-1], c.via, c.detail, c.version) for c in adapter.list_consumers(KEY)}
    assert found == {
        ("orders", "env", "SA_KEY", "1"),
        ("nightly", "volume", "/secrets/key.json", "latest"),
        ("by-number", "env", "A", "current"),
        ("whole", "volume", "/mnt/key/app-one-key", "latest"),
        ("no-version", "env", "C", "latest"),
    }
    assert adapter.list_consumers(f"projects/{PROJECT}/secrets/app-one-key") == adapter.list_consumers(KEY)
    assert adapter.list_consumers(f"projects/{NUMBER}/secrets/nothing-reads-this") == []
    services_listed = env.methods(env.run)["run.projects.locations.services.list"]
    assert services_listed == 5, "one call per page of one, and the scan is cached across targets"
    assert all(c.updated is not None and c.container for c in adapter.list_consumers(KEY))

    job_ref = next(c for c in adapter.list_consumers(KEY) if c.kind == "job")
    assert adapter.roll(job_ref, version="current") == "nightly generation 2"
    job = requests.get(f"{env.run.url}/v2/{JOB_NAME}", timeout=10).json()
    items = job["template"]["template"]["volumes"][0]["secret"]["items"]
    assert items == [{"path": "key.json", "version": "current"}]
    whole = next(c for c in adapter.list_consumers(KEY) if c.name.endswith("/whole"))
    assert adapter.roll(whole, version="current").startswith("whole-")
    rolled = requests.get(f"{parent}/services/whole", timeout=10).json()["template"]["volumes"][0]["secret"]
    assert rolled == {"secret": "app-one-key", "items": [{"path": "app-one-key", "version": "current"}]}

    # someone repoints the env var at another secret between the listing and the roll
    orders = next(c for c in adapter.list_consumers(KEY) if c.name == SERVICE)
    current = requests.get(f"{env.run.url}/v2/{SERVICE}", timeout=10).json()
    current["template"]["containers"][0]["env"][1]["valueSource"]["secretKeyRef"]["secret"] = "other-secret"
    del current["template"]["revision"]  # a new template needs a new revision name (Cloud Run: 409)
    assert requests.patch(f"{env.run.url}/v2/{SERVICE}", json=current, timeout=10).ok
    with pytest.raises(NotFoundError, match="no longer has that reference"):
        adapter.roll(orders, version="2")
    with pytest.raises(NotFoundError):
        adapter.roll(replace(orders, detail="NOPE"), version="2")
    adapter.close()
