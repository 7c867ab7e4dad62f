"""``gatehouse local up|down``: the whole one-machine stack, wired the way production is wired.

Production: log sink -> Pub/Sub topic -> Eventarc/push -> ``on_run_event``; commands topic ->
``on_command``. Here: the Cloud Run stand-in publishes the sink's audit entries to the Pub/Sub
emulator, whose push subscriptions deliver to the two functions running under functions-framework.
Everything binds to 127.0.0.1 on free ports, so stacks with different state directories coexist.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from deploy.local.processes import (
    Managed,
    StackError,
    alive,
    free_port,
    start_firestore_emulator,
    start_pubsub_emulator,
    start_python,
    stop,
)

__all__ = ["StackError", "down", "load_state", "settings_env", "up"]

PROJECT = "gatehouse-local"
REGION = "europe-west1"
ORGANIZATION = "gatehouse-local"
ENVIRONMENT = "test"
OWNER_ID = "gatehouse-local"
PROXY_SERVICE_ACCOUNT = f"apigee-proxy@{PROJECT}.iam.gserviceaccount.com"
# Cloud Run jobs the Cloud Run stand-in runs as local processes (jobs.run)
JOBS = {"reconcile": "jobs.reconcile"}
TOPICS = {
    "run_events": "gatehouse-run-events",
    "commands": "gatehouse-commands",
    "alerts": "gatehouse-alerts",
    "dead_letter": "gatehouse-dead-letter",
}
STATE_FILE = "stack.json"
REPO = Path(__file__).resolve().parents[2]


def load_state(state_dir: Path) -> dict[str, Any]:
    path = Path(state_dir) / STATE_FILE
    try:
        state: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        raise StackError(f"no local stack in {state_dir} (start one with `gatehouse local up`)") from None
    return state


def settings_env(state: dict[str, Any]) -> dict[str, str]:
    """Environment that points gatehouse's settings and Google's client libraries at the stack."""
    return {
        "PUBSUB_EMULATOR_HOST": state["pubsub_emulator"],
        "FIRESTORE_EMULATOR_HOST": state["firestore_emulator"],
        "GOOGLE_CLOUD_PROJECT": state["project"],
        "GATEHOUSE_ANONYMOUS_CREDENTIALS": "true",
        "GATEHOUSE_APIGEE_ENDPOINT": state["apigee"],
        "GATEHOUSE_APIGEE_ORG": state["organization"],
        "GATEHOUSE_APIGEE_ENVIRONMENTS": state["environment"],
        "GATEHOUSE_CLOUDRUN_ENDPOINT": state["cloudrun"],
        "GATEHOUSE_PROJECTS": state["project"],
        "GATEHOUSE_REGIONS": state["region"],
        "GATEHOUSE_FIRESTORE_PROJECT": state["project"],
        "GATEHOUSE_OWNER_ID": state["owner_id"],
        "GATEHOUSE_PROXY_SERVICE_ACCOUNT": state["proxy_service_account"],
        "GATEHOUSE_COMMANDS_TOPIC": state["topics"]["commands"],
        "GATEHOUSE_DEPLOY_POLL_SECONDS": "0.5",
        **({"GATEHOUSE_RECONCILE_JOB": state["jobs"]["reconcile"]} if "jobs" in state else {}),
    }


def _running(state_dir: Path) -> list[dict[str, Any]]:
    try:
        state = load_state(state_dir)
    except StackError:
        return []
    return [p for p in state.get("processes", []) if alive(int(p["pid"]))]


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
        raise StackError(f"a stack is already running in {state_dir}; run `gatehouse local down` first")
    logs = state_dir / "logs"
    started: list[Managed] = []
    try:
        log("starting the Pub/Sub and Firestore emulators")
        with ThreadPoolExecutor(2) as pool:
            pubsub_f = pool.submit(start_pubsub_emulator, logs)
            firestore_f = pool.submit(start_firestore_emulator, logs)
            for future in (pubsub_f, firestore_f):
                try:
                    started.append(future.result())
                except StackError:
                    for other in (pubsub_f, firestore_f):
                        if other is not future and other.exception() is None:
                            started.append(other.result())
                    raise
        pubsub, firestore = started
        topics = {k: f"projects/{PROJECT}/topics/{v}" for k, v in TOPICS.items()}
        _create_topics(pubsub.host_port, topics)

        ports = {name: free_port() for name in ("apigee", "cloudrun", "on_run_event", "on_command")}
        state: dict[str, Any] = {
            "project": PROJECT,
            "region": REGION,
            "organization": ORGANIZATION,
            "environment": ENVIRONMENT,
            "owner_id": OWNER_ID,
            "proxy_service_account": PROXY_SERVICE_ACCOUNT,
            "pubsub_emulator": pubsub.host_port,
            "firestore_emulator": firestore.host_port,
            "apigee": f"http://127.0.0.1:{ports['apigee']}",
            "cloudrun": f"http://127.0.0.1:{ports['cloudrun']}",
            "functions": {t: f"http://127.0.0.1:{ports[t]}" for t in ("on_run_event", "on_command")},
            "jobs": {job: f"projects/{PROJECT}/locations/{REGION}/jobs/{job}" for job in JOBS},
            "topics": topics,
            "state_dir": str(state_dir),
        }
        # the functions and the jobs the Cloud Run stand-in starts get production-shaped settings
        runtime_env = {**settings_env(state), **(extra_env or {}), "PYTHONUNBUFFERED": "1"}
        commands = {
            "apigee-standin": [
                "-m",
                "deploy.local.standins.apigee",
                "--port",
                str(ports["apigee"]),
                "--org",
                ORGANIZATION,
                "--env",
                ENVIRONMENT,
                "--env",
                "prod",
                "--deploy-delay-ms",
                str(deploy_delay_ms),
                "--state-file",
                str(state_dir / "apigee-state.json"),
            ],
            "cloudrun-standin": [
                "-m",
                "deploy.local.standins.cloudrun",
                "--port",
                str(ports["cloudrun"]),
                "--audit-topic",
                topics["run_events"],
                "--state-file",
                str(state_dir / "cloudrun-state.json"),
                "--job-log-dir",
                str(logs),
                *(arg for job, module in JOBS.items() for arg in ("--job", f"{job}={module}")),
            ],
        }
        for target in ("on_run_event", "on_command"):
            commands[target] = [
                "-m",
                "functions_framework",
                "--target",
                target,
                "--source",
                str(REPO / "functions" / "main.py"),
                "--signature-type",
                "cloudevent",
                "--host",
                "127.0.0.1",
                "--port",
                str(ports[target]),
            ]
        port_of = {
            "apigee-standin": ports["apigee"],
            "cloudrun-standin": ports["cloudrun"],
            "on_run_event": ports["on_run_event"],
            "on_command": ports["on_command"],
        }
        log("starting the Apigee and Cloud Run stand-ins and the functions on_run_event and on_command")
        with ThreadPoolExecutor(len(commands)) as pool:
            futures = [
                pool.submit(
                    start_python,
                    name,
                    argv,
                    port=port_of[name],
                    log_dir=logs,
                    env=runtime_env,
                    ready_path="/_standin/health" if name.endswith("standin") else "/",
                )
                for name, argv in commands.items()
            ]
            failure: BaseException | None = None
            for future in futures:
                try:
                    started.append(future.result())
                except BaseException as exc:  # keep collecting so every started process is stopped
                    failure = failure or exc
            if failure:
                raise failure
        functions = state["functions"]
        state["subscriptions"] = _create_push_subscriptions(pubsub.host_port, topics, functions)
        state["processes"] = [m.to_dict() for m in started]
        state_dir.mkdir(parents=True, exist_ok=True)
        (state_dir / STATE_FILE).write_text(json.dumps(state, indent=2, sort_keys=True))
        log(f"stack is up; state in {state_dir / STATE_FILE}")
        return state
    except BaseException:
        for managed in reversed(started):
            stop(managed)
        raise


def down(state_dir: Path) -> list[str]:
    """Stop every process the stack in ``state_dir`` started; returns their names."""
    try:
        state = load_state(Path(state_dir))
    except StackError:
        return []
    stopped = []
    for proc in reversed(state.get("processes", [])):
        if alive(int(proc["pid"])):
            stop(int(proc["pid"]))
            stopped.append(str(proc["name"]))
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


def _create_push_subscriptions(
    host: str, topics: dict[str, str], functions: dict[str, str]
) -> dict[str, str]:
    """Push subscriptions to the functions, as Eventarc wires them (path carries the topic, so
    functions-framework sets the CloudEvent source), with retry backoff and a dead-letter topic."""
    from google.cloud.pubsub_v1 import types
    from google.protobuf import duration_pb2

    _, subscriber = _pubsub_clients(host)
    wiring = {"run_events": "on_run_event", "commands": "on_command"}
    names = {}
    for key, target in wiring.items():
        topic = topics[key]
        name = f"projects/{PROJECT}/subscriptions/{TOPICS[key]}-{target.replace('_', '-')}"
        endpoint = f"{functions[target]}/{topic}"
        subscriber.create_subscription(
            request=types.Subscription(
                name=name,
                topic=topic,
                ack_deadline_seconds=60,
                push_config=types.PushConfig(push_endpoint=endpoint),
                retry_policy=types.RetryPolicy(
                    minimum_backoff=duration_pb2.Duration(seconds=1),
                    maximum_backoff=duration_pb2.Duration(seconds=10),
                ),
                dead_letter_policy=types.DeadLetterPolicy(
                    dead_letter_topic=topics["dead_letter"], max_delivery_attempts=10
                ),
            )
        )
        names[key] = name
    # keep dead letters inspectable
    dl_name = f"projects/{PROJECT}/subscriptions/{TOPICS['dead_letter']}-inspect"
    subscriber.create_subscription(name=dl_name, topic=topics["dead_letter"])
    names["dead_letter"] = dl_name
    return names


if __name__ == "__main__":  # pragma: no cover
    print(json.dumps(up(Path(sys.argv[1] if len(sys.argv) > 1 else ".gatehouse/local"), log=print)))
