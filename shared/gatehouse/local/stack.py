"""``gatehouse local up|down``: the whole one-machine stack, wired the way production is wired.

Production: log sink -> Pub/Sub topic -> push -> ``on_run_event``; commands topic (and Secret
Manager's SECRET_ROTATE notifications) -> ``on_command``; Cloud Monitoring -> alerts topic -> pull
subscription drained by the ``latency-tickets`` job; Cloud Scheduler -> Cloud Run jobs. Here: the
real Pub/Sub and Firestore emulators; gcp-storage-emulator (PyPI) for Cloud Storage; stand-ins for
the Cloud Run Admin API (which also publishes the sink's audit entries and runs jobs as local
processes), Apigee, IAM, Secret Manager, Org Policy, GitHub Issues, Cloud Logging (entries.list
over the stack's own log lines) and Cloud Scheduler (the jobs Terraform defines, which
``gatehouse freeze`` pauses; the stand-in does not dispatch them); both functions under
functions-framework behind push subscriptions.
Everything binds to 127.0.0.1 on free ports, so stacks with different state directories coexist.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from gatehouse.local.processes import (
    Managed,
    StackError,
    StackInputError,
    StackNotRunningError,
    alive,
    free_port,
    start_firestore_emulator,
    start_pubsub_emulator,
    start_python,
    start_storage_emulator,
    stop,
)

__all__ = [
    "StackError",
    "StackInputError",
    "StackNotRunningError",
    "check_running",
    "down",
    "load_state",
    "settings_env",
    "up",
]

PROJECT = "gatehouse-local"
PROJECT_NUMBER = "123456789012"
REGION = "europe-west1"
ORGANIZATION = "gatehouse-local"
ENVIRONMENT = "test"
OWNER_ID = "gatehouse-local"
PROXY_SERVICE_ACCOUNT = f"apigee-proxy@{PROJECT}.iam.gserviceaccount.com"
ROTATION_IDENTITY = f"gatehouse-rotate@{PROJECT}.iam.gserviceaccount.com"
TRACKER_REPO = "platform/apigee-routing"
TRACKER_TOKEN_SECRET = f"projects/{PROJECT}/secrets/gatehouse-tracker-token"
# Cloud Run jobs the Cloud Run stand-in runs as local processes (jobs.run)
JOBS = {
    "reconcile": "gatehouse.entrypoints.reconcile",
    "rotate-credentials": "gatehouse.entrypoints.rotate_credentials",
    "latency-tickets": "gatehouse.entrypoints.latency_tickets",
}
TOPICS = {
    "run_events": "gatehouse-run-events",
    "commands": "gatehouse-commands",
    "alerts": "gatehouse-alerts",
    "dead_letter": "gatehouse-dead-letter",
}
STANDINS = ("apigee", "cloudrun", "iam", "secretmanager", "orgpolicy", "github", "logging", "scheduler")
# stand-ins added after stacks were in use: a state file written before them still loads
LATER_STANDINS = ("logging", "scheduler")
# The Cloud Scheduler jobs deploy/terraform/scheduler.tf creates (ids with the default name_prefix),
# with its default schedules: Cloud Run jobs started through jobs.run, and the rollout tick, a
# command on the commands topic.
SCHEDULER_JOBS = {
    "gatehouse-reconcile": ("30 2 * * *", "reconcile"),
    "gatehouse-rotate-credentials": ("0 6 * * *", "rotate-credentials"),
    "gatehouse-latency-tickets": ("*/5 * * * *", "latency-tickets"),
    "gatehouse-rollout-tick": ("*/5 * * * *", None),
}
STATE_FILE = "stack.json"
# what functions-framework loads: the package's own module, so an installed wheel runs the stack too
FUNCTIONS_SOURCE = Path(__file__).resolve().parents[1] / "entrypoints" / "functions.py"


# what settings_env reads: a state file without them was not written by `up`
_REQUIRED = (
    "project",
    "project_number",
    "region",
    "organization",
    "environment",
    "owner_id",
    "proxy_service_account",
    "rotation_identity",
    "tracker_repo",
    "tracker_token_secret",
    "pubsub_emulator",
    "firestore_emulator",
    *(name for name in STANDINS if name not in LATER_STANDINS),
    "subscriptions",
)
START_HINT = "`gatehouse local up --state-dir {dir}` (or `make demo`)"


def load_state(state_dir: Path) -> dict[str, Any]:
    """The stack's endpoints as ``up`` recorded them; StackNotRunningError when there is none."""
    path = Path(state_dir) / STATE_FILE
    try:
        text = path.read_text()
    except (FileNotFoundError, NotADirectoryError):
        raise StackNotRunningError(
            f"no local stack in {state_dir}: start one with " + START_HINT.format(dir=state_dir)
        ) from None
    except OSError as exc:
        raise StackInputError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        state = json.loads(text)
    except ValueError as exc:
        raise StackInputError(
            f"{path} is not valid JSON ({exc}): remove it, then start the stack with "
            + START_HINT.format(dir=state_dir)
        ) from None
    missing = [key for key in _REQUIRED if key not in state] if isinstance(state, dict) else ["everything"]
    if missing or not isinstance(state.get("subscriptions"), dict):
        raise StackInputError(
            f"{path} is not a stack state file (missing {', '.join(missing) or 'subscriptions'}): "
            "remove it, then start the stack with " + START_HINT.format(dir=state_dir)
        )
    return dict(state)


def endpoints(state: dict[str, Any]) -> dict[str, tuple[str, int]]:
    """Every ``host, port`` the stack recorded, by name (emulators, stand-ins, functions)."""
    found: dict[str, tuple[str, int]] = {}
    named = {
        "pubsub emulator": f"//{state.get('pubsub_emulator', '')}",
        "firestore emulator": f"//{state.get('firestore_emulator', '')}",
        "storage emulator": str(state.get("storage", "")),
        **{f"{name} stand-in": str(state.get(name, "")) for name in STANDINS},
        **{name: str(url) for name, url in dict(state.get("functions") or {}).items()},
    }
    for name, url in named.items():
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            port = None
        if parts.hostname and port:
            found[name] = (parts.hostname, port)
    return found


def check_running(state: dict[str, Any], state_dir: Path | str, *, timeout: float = 0.5) -> None:
    """Raise StackNotRunningError unless every endpoint of the stack accepts a TCP connection.

    A stopped stack leaves its state file behind; the clients pointed at its ports would retry for
    minutes. This fails in well under a second instead (closed local ports refuse at once).
    """
    found = endpoints(state)

    def answers(address: tuple[str, int]) -> bool:
        try:
            with socket.create_connection(address, timeout=timeout):
                return True
        except OSError:
            return False

    with ThreadPoolExecutor(max(1, len(found))) as pool:
        answered = dict(zip(found, pool.map(answers, found.values()), strict=True))
    dead = [name for name, ok in answered.items() if not ok]
    if not found or dead:
        where = (
            f"nothing answers on the {dead[0]} ({found[dead[0]][0]}:{found[dead[0]][1]})"
            + (f" and {len(dead) - 1} more" if len(dead) > 1 else "")
            if dead
            else "it recorded no endpoints"
        )
        raise StackNotRunningError(
            f"the local stack in {state_dir} is not running ({where}): start it with "
            + START_HINT.format(dir=state_dir)
        )


def settings_env(state: dict[str, Any]) -> dict[str, str]:
    """Environment that points gatehouse's settings and Google's client libraries at the stack."""
    jobs = state.get("jobs", {})
    return {
        "PUBSUB_EMULATOR_HOST": state["pubsub_emulator"],
        "FIRESTORE_EMULATOR_HOST": state["firestore_emulator"],
        # google-cloud-storage's documented switch: no credentials, this endpoint (a stack started by
        # an older gatehouse has no storage emulator: its state file still loads)
        **({"STORAGE_EMULATOR_HOST": state["storage"]} if state.get("storage") else {}),
        "GOOGLE_CLOUD_PROJECT": state["project"],
        "GATEHOUSE_ANONYMOUS_CREDENTIALS": "true",
        "GATEHOUSE_APIGEE_ENDPOINT": state["apigee"],
        "GATEHOUSE_APIGEE_ORG": state["organization"],
        "GATEHOUSE_APIGEE_ENVIRONMENTS": state["environment"],
        "GATEHOUSE_CLOUDRUN_ENDPOINT": state["cloudrun"],
        "GATEHOUSE_SECRETMANAGER_ENDPOINT": state["secretmanager"],
        "GATEHOUSE_IAM_ENDPOINT": state["iam"],
        "GATEHOUSE_IAMCREDENTIALS_ENDPOINT": state["iam"],  # the IAM stand-in serves both APIs
        # the Cloud Run stand-in answers the services' run.app traffic (their spec paths)
        "GATEHOUSE_SERVICE_ENDPOINT": state["cloudrun"],
        "GATEHOUSE_ORGPOLICY_ENDPOINT": state["orgpolicy"],
        **({"GATEHOUSE_LOGGING_ENDPOINT": state["logging"]} if state.get("logging") else {}),
        # the Scheduler jobs live beside the functions, as Terraform puts them (an older stack has no
        # Scheduler stand-in: without its endpoint `gatehouse freeze` says so and changes nothing)
        **({"GATEHOUSE_SCHEDULER_ENDPOINT": state["scheduler"]} if state.get("scheduler") else {}),
        "GATEHOUSE_SCHEDULER_PROJECT": state["project"],
        "GATEHOUSE_SCHEDULER_LOCATION": state["region"],
        "GATEHOUSE_PROJECTS": state["project"],
        "GATEHOUSE_REGIONS": state["region"],
        "GATEHOUSE_PROJECT_NUMBERS": f"{state['project']}={state['project_number']}",
        "GATEHOUSE_FIRESTORE_PROJECT": state["project"],
        "GATEHOUSE_OWNER_ID": state["owner_id"],
        "GATEHOUSE_PROXY_SERVICE_ACCOUNT": state["proxy_service_account"],
        "GATEHOUSE_DEPLOY_POLL_SECONDS": "0.5",
        "GATEHOUSE_RECONCILE_JOB": jobs.get("reconcile", ""),
        "GATEHOUSE_ROTATE_JOB": jobs.get("rotate-credentials", ""),
        "GATEHOUSE_TICKETS_JOB": jobs.get("latency-tickets", ""),
        "GATEHOUSE_ROTATION_JOB_IDENTITY": state["rotation_identity"],
        "GATEHOUSE_TICKETS_SUBSCRIPTION": state["subscriptions"]["alerts"],
        "GATEHOUSE_TICKETS_TRACKER": "github",
        "GATEHOUSE_TICKETS_TARGET": state["tracker_repo"],
        "GATEHOUSE_TICKETS_TRACKER_URL": state["github"],
        "GATEHOUSE_TICKETS_TOKEN_SECRET": state["tracker_token_secret"],
    }


def _running(state_dir: Path) -> list[dict[str, Any]]:
    try:
        state = load_state(state_dir)
    except StackError:
        return []
    return [p for p in state.get("processes", []) if alive(int(p["pid"]))]


def _standin_argv(
    name: str, port: int, state_dir: Path, topics: dict[str, str], deploy_delay_ms: int
) -> list[str]:
    argv = [
        "-m",
        f"gatehouse.local.standins.{name}",
        "--port",
        str(port),
        "--state-file",
        str(state_dir / f"{name}-state.json"),
    ]
    numbers = ["--project-number-map", f"{PROJECT}={PROJECT_NUMBER}"]
    if name == "apigee":
        argv += [
            "--org",
            ORGANIZATION,
            "--env",
            ENVIRONMENT,
            "--env",
            "prod",
            "--deploy-delay-ms",
            str(deploy_delay_ms),
        ]
    elif name == "cloudrun":
        argv += ["--audit-topic", topics["run_events"], "--job-log-dir", str(state_dir / "logs"), *numbers]
        argv += [arg for job, module in JOBS.items() for arg in ("--job", f"{job}={module}")]
    elif name == "secretmanager":
        argv += numbers
    elif name == "logging":  # entries.list over the stack's own JSON log lines
        argv += ["--log-dir", str(state_dir / "logs"), "--project", PROJECT]
    return argv


def up(
    state_dir: Path,
    *,
    log: Callable[[str], None] = lambda _: None,
    deploy_delay_ms: int = 300,
    extra_env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Start everything; return (and write to ``state_dir/stack.json``) the stack's endpoints."""
    state_dir = Path(state_dir).resolve()
    if _running(state_dir):
        raise StackInputError(
            f"a stack is already running in {state_dir}; "
            f"run `gatehouse local down --state-dir {state_dir}` first"
        )
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        (state_dir / ".writable").touch()
        (state_dir / ".writable").unlink()
    except OSError as exc:
        raise StackInputError(
            f"cannot use {state_dir} as the stack's state directory: {exc.strerror or exc}"
        ) from None
    logs = state_dir / "logs"
    started: list[Managed] = []
    try:
        log("starting the Pub/Sub, Firestore and Cloud Storage emulators")
        _start_all(
            started,
            {
                "pubsub": lambda: start_pubsub_emulator(logs),
                "firestore": lambda: start_firestore_emulator(logs),
                "storage": lambda: start_storage_emulator(logs, state_dir / "storage", PROJECT_NUMBER),
            },
        )
        pubsub, firestore, storage = started
        topics = {k: f"projects/{PROJECT}/topics/{v}" for k, v in TOPICS.items()}
        _create_topics(pubsub.host_port, topics)

        ports = {name: free_port() for name in (*STANDINS, "on_run_event", "on_command")}
        state: dict[str, Any] = {
            "project": PROJECT,
            "project_number": PROJECT_NUMBER,
            "region": REGION,
            "organization": ORGANIZATION,
            "environment": ENVIRONMENT,
            "owner_id": OWNER_ID,
            "proxy_service_account": PROXY_SERVICE_ACCOUNT,
            "rotation_identity": ROTATION_IDENTITY,
            "tracker_repo": TRACKER_REPO,
            "tracker_token_secret": TRACKER_TOKEN_SECRET,
            "pubsub_emulator": pubsub.host_port,
            "firestore_emulator": firestore.host_port,
            "storage": storage.url,
            **{name: f"http://127.0.0.1:{ports[name]}" for name in STANDINS},
            "functions": {t: f"http://127.0.0.1:{ports[t]}" for t in ("on_run_event", "on_command")},
            "jobs": {job: f"projects/{PROJECT}/locations/{REGION}/jobs/{job}" for job in JOBS},
            "topics": topics,
            "subscriptions": _subscription_names(),
            "state_dir": str(state_dir),
        }
        # the functions and the jobs the Cloud Run stand-in starts get production-shaped settings
        runtime_env = {
            **settings_env(state),
            "GATEHOUSE_ROTATION_REPORT_DIR": str(state_dir / "reports"),
            "PYTHONUNBUFFERED": "1",
            **(extra_env or {}),
        }
        starters: dict[str, Callable[[], Managed]] = {}
        for name in STANDINS:
            argv = _standin_argv(name, ports[name], state_dir, topics, deploy_delay_ms)
            starters[f"{name}-standin"] = _starter(
                f"{name}-standin", argv, ports[name], logs, runtime_env, ready="/_standin/health"
            )
        for target in ("on_run_event", "on_command"):
            argv = [
                "-m",
                "functions_framework",
                "--target",
                target,
                "--source",
                str(FUNCTIONS_SOURCE),
                "--signature-type",
                "cloudevent",
                "--host",
                "127.0.0.1",
                "--port",
                str(ports[target]),
            ]
            starters[target] = _starter(target, argv, ports[target], logs, runtime_env, ready="/")
        log(
            "starting the stand-ins (Apigee, Cloud Run, IAM, Secret Manager, Org Policy, GitHub, Logging, "
            "Scheduler), "
            "functions"
        )
        _start_all(started, starters)
        _create_subscriptions(pubsub.host_port, topics, state["functions"])
        _seed(state)
        state["processes"] = [m.to_dict() for m in started]
        state_dir.mkdir(parents=True, exist_ok=True)
        (state_dir / STATE_FILE).write_text(json.dumps(state, indent=2, sort_keys=True))
        log(f"stack is up; state in {state_dir / STATE_FILE}")
        return state
    except BaseException:
        for managed in reversed(started):
            stop(managed)
        raise


def _starter(
    name: str, argv: list[str], port: int, logs: Path, env: dict[str, str], *, ready: str
) -> Callable[[], Managed]:
    return lambda: start_python(name, argv, port=port, log_dir=logs, env=env, ready_path=ready)


def _start_all(started: list[Managed], starters: dict[str, Callable[[], Managed]]) -> None:
    """Start in parallel; every process that did start is recorded, so a failure stops them all."""
    with ThreadPoolExecutor(len(starters)) as pool:
        futures = [pool.submit(start) for start in starters.values()]
        failure: BaseException | None = None
        for future in futures:
            try:
                started.append(future.result())
            except BaseException as exc:
                failure = failure or exc
        if failure:
            raise failure


def down(state_dir: Path, *, log: Callable[[str], None] = lambda _: None, grace: float = 3.0) -> list[str]:
    """Stop every process the stack in ``state_dir`` started, all at once; returns their names.

    Each gets SIGTERM and ``grace`` seconds before SIGKILL (the emulators' JVMs take their time and
    hold nothing that must be flushed: the stand-ins write their state on every change). ``log`` hears
    of each process as it stops, so a person sees progress."""
    try:
        state = load_state(Path(state_dir))
    except StackNotRunningError:
        return []
    running = [p for p in reversed(state.get("processes", [])) if alive(int(p["pid"]))]

    def stop_one(proc: dict[str, Any]) -> str:
        started = time.monotonic()
        stop(int(proc["pid"]), timeout=grace)
        log(f"stopped {proc['name']} ({time.monotonic() - started:.1f}s)")
        return str(proc["name"])

    stopped: list[str] = []
    if running:
        with ThreadPoolExecutor(len(running)) as pool:
            stopped = list(pool.map(stop_one, running))
    (Path(state_dir) / STATE_FILE).unlink(missing_ok=True)
    return stopped


def _pubsub_clients(host: str) -> tuple[Any, Any]:
    os.environ["PUBSUB_EMULATOR_HOST"] = host
    from google.cloud.pubsub_v1 import PublisherClient, SubscriberClient

    return PublisherClient(), SubscriberClient()


def _create_topics(host: str, topics: dict[str, str]) -> None:
    publisher, _ = _pubsub_clients(host)
    for topic in topics.values():
        publisher.create_topic(name=topic)


# The commands subscription's filter, as deploy/terraform/pubsub.tf sets it: commands (no attributes)
# and SECRET_ROTATE notifications pass; Secret Manager's other events, above all the data-less
# TOPIC_CONFIGURED test message, are acknowledged by Pub/Sub and never reach on_command.
COMMANDS_FILTER = 'NOT attributes:eventType OR attributes.eventType = "SECRET_ROTATE"'


def _subscription_names() -> dict[str, str]:
    return {
        "run_events": f"projects/{PROJECT}/subscriptions/{TOPICS['run_events']}-on-run-event",
        "commands": f"projects/{PROJECT}/subscriptions/{TOPICS['commands']}-on-command",
        "alerts": f"projects/{PROJECT}/subscriptions/{TOPICS['alerts']}-tickets",
        "dead_letter": f"projects/{PROJECT}/subscriptions/{TOPICS['dead_letter']}-inspect",
    }


def _create_subscriptions(host: str, topics: dict[str, str], functions: dict[str, str]) -> None:
    """Push subscriptions to the functions, as production wires them (the path carries the topic, so
    functions-framework sets the CloudEvent source), with retry backoff and a dead-letter topic; a
    pull subscription for the tickets job with a long ack deadline (a run acknowledges only what it
    made durable)."""
    from google.cloud.pubsub_v1 import types
    from google.protobuf import duration_pb2

    _, subscriber = _pubsub_clients(host)
    names = _subscription_names()
    retry = types.RetryPolicy(
        minimum_backoff=duration_pb2.Duration(seconds=1), maximum_backoff=duration_pb2.Duration(seconds=10)
    )
    dead_letter = types.DeadLetterPolicy(dead_letter_topic=topics["dead_letter"], max_delivery_attempts=10)
    for key, target in (("run_events", "on_run_event"), ("commands", "on_command")):
        subscriber.create_subscription(
            request=types.Subscription(
                name=names[key],
                topic=topics[key],
                ack_deadline_seconds=60,
                push_config=types.PushConfig(push_endpoint=f"{functions[target]}/{topics[key]}"),
                retry_policy=retry,
                dead_letter_policy=dead_letter,
                filter=COMMANDS_FILTER if key == "commands" else "",
            )
        )
    subscriber.create_subscription(
        request=types.Subscription(
            name=names["alerts"],
            topic=topics["alerts"],
            ack_deadline_seconds=600,
            retry_policy=retry,
            dead_letter_policy=dead_letter,
        )
    )
    subscriber.create_subscription(name=names["dead_letter"], topic=topics["dead_letter"])


def _seed(state: dict[str, Any]) -> None:
    """What an operator (and Terraform) sets up once: the tracker token in Secret Manager, the
    service accounts, the Scheduler jobs."""
    from google.api_core import exceptions as gexc
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import secretmanager

    client = secretmanager.SecretManagerServiceClient(
        credentials=AnonymousCredentials(),
        transport="rest",
        client_options=ClientOptions(api_endpoint=state["secretmanager"]),
    )
    # the stand-ins keep their state across `down`/`up`: seed what is missing, keep what is there
    secret_id = TRACKER_TOKEN_SECRET.rsplit("/", 1)[-1]
    with contextlib.suppress(gexc.Conflict):  # REST maps 409 ALREADY_EXISTS to Conflict: seeded before
        client.create_secret(
            request={
                "parent": f"projects/{PROJECT}",
                "secret_id": secret_id,
                "secret": {"replication": {"automatic": {}}},
            }
        )
    enabled = client.list_secret_versions(request={"parent": TRACKER_TOKEN_SECRET, "filter": "state:ENABLED"})
    if not any(True for _ in enabled):
        client.add_secret_version(
            request={"parent": TRACKER_TOKEN_SECRET, "payload": {"data": b"local-tracker-token"}}
        )
    import requests

    for account in (PROXY_SERVICE_ACCOUNT, ROTATION_IDENTITY):
        response = requests.post(
            f"{state['iam']}/v1/projects/{PROJECT}/serviceAccounts",
            timeout=10,
            json={"accountId": account.split("@")[0]},
        )
        if response.status_code != 409:  # 409: the account exists already
            response.raise_for_status()
    _seed_scheduler(state)


def _seed_scheduler(state: dict[str, Any]) -> None:
    """The jobs of deploy/terraform/scheduler.tf, created ENABLED through the official client; a job
    that exists keeps its state (a stack restarted during a freeze stays frozen)."""
    from google.api_core import exceptions as gexc
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import scheduler_v1

    client = scheduler_v1.CloudSchedulerClient(
        credentials=AnonymousCredentials(),
        transport="rest",
        client_options=ClientOptions(api_endpoint=state["scheduler"]),
    )
    parent = f"projects/{PROJECT}/locations/{REGION}"
    scheduler_account = f"gatehouse-scheduler@{PROJECT}.iam.gserviceaccount.com"
    try:
        for job_id, (schedule, run_job) in SCHEDULER_JOBS.items():
            job = scheduler_v1.Job(
                name=f"{parent}/jobs/{job_id}",
                schedule=schedule,
                time_zone="Etc/UTC",
                attempt_deadline=timedelta(seconds=60),
            )
            if run_job is None:
                job.pubsub_target = scheduler_v1.PubsubTarget(
                    topic_name=state["topics"]["commands"],
                    data=json.dumps({"command": "rollout", "action": "tick"}).encode(),
                )
            else:
                job.http_target = scheduler_v1.HttpTarget(
                    uri=f"https://run.googleapis.com/v2/{state['jobs'][run_job]}:run",
                    http_method=scheduler_v1.HttpMethod.POST,
                    oauth_token=scheduler_v1.OAuthToken(service_account_email=scheduler_account),
                )
            with contextlib.suppress(gexc.Conflict):  # seeded before: keep it as it is
                client.create_job(parent=parent, job=job)
    finally:
        client.transport.close()


if __name__ == "__main__":  # pragma: no cover
    print(json.dumps(up(Path(sys.argv[1] if len(sys.argv) > 1 else ".gatehouse/local"), log=print)))
