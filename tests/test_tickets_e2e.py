"""Tickets end to end on the local stack: Apigee analytics in the Apigee stand-in, Cloud Monitoring
notifications on the alerts topic (Pub/Sub emulator, pull subscription), the ledger in the Firestore
emulator, tickets in the GitHub stand-in; the latency-tickets job runs as separate processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from typing import Any

import pytest
import requests

from gatehouse.local import samples
from gatehouse.local.demo import run_command
from gatehouse.local.stack import settings_env
from tests.conftest import wait_for

pytestmark = pytest.mark.stack


def _issues(stack: dict[str, Any], label: str) -> list[dict[str, Any]]:
    url = f"{stack['github']}/repos/{stack['tracker_repo']}/issues"
    found = requests.get(
        url,
        params={"labels": label, "state": "all", "per_page": "100"},
        headers={"Authorization": "Bearer t"},
        timeout=10,
    ).json()
    return [i for i in found if isinstance(i, dict)]


def _comments(stack: dict[str, Any], number: int) -> list[str]:
    url = f"{stack['github']}/repos/{stack['tracker_repo']}/issues/{number}/comments"
    return [c["body"] for c in requests.get(url, headers={"Authorization": "Bearer t"}, timeout=10).json()]


def _job(stack: dict[str, Any]) -> subprocess.Popen[str]:
    env = {**os.environ, **settings_env(stack), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "gatehouse.entrypoints.latency_tickets"],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def _drained(stack: dict[str, Any]) -> bool:
    from google.cloud.pubsub_v1 import SubscriberClient

    response = SubscriberClient().pull(
        request={"subscription": stack["subscriptions"]["alerts"], "max_messages": 10}, timeout=5
    )
    return not response.received_messages


def test_two_concurrent_runs_open_one_ticket_per_problem_and_ack_everything(stack: dict[str, Any]) -> None:
    tag = uuid.uuid4().hex[:6]
    env = stack["environment"]
    slow_backend, spike = f"e2e-slow-{tag}", f"e2e-spike-{tag}"
    for proxy in (slow_backend, spike):
        samples.seed_proxy(stack, proxy)  # gatehouse tickets only the proxies it looks after
    started = {
        slow_backend: samples.seed_stats(stack, env, slow_backend, samples.scenario("target")),
        spike: samples.seed_stats(stack, env, spike, samples.scenario("traffic")),
    }
    notifications: list[Any] = []
    for proxy, family in ((slow_backend, "target"), (spike, "proxy")):
        one = samples.incident(
            stack,
            incident_id=f"0.{proxy}",
            proxy=proxy,
            environment=env,
            started_at=started[proxy],
            family=family,
        )
        notifications += [one] * 3  # Cloud Monitoring re-sends; Pub/Sub redelivers
    notifications += [samples.test_notification(), samples.uptime_incident(stack), b"\xff not json"]
    samples.publish(stack, "alerts", notifications)

    runs = [_job(stack), _job(stack)]
    outputs = [run.communicate(timeout=120)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs

    for proxy in (slow_backend, spike):
        tickets = [i for i in _issues(stack, "gatehouse") if proxy in i["title"]]
        assert len(tickets) == 1, [t["title"] for t in tickets]
    assert "target-bound" in next(
        i["title"] for i in _issues(stack, "gatehouse") if slow_backend in i["title"]
    )
    assert _drained(stack)  # the test message, the uptime incident and the malformed one were acked too


def test_refire_comments_and_clearing_adds_a_cleared_comment(stack: dict[str, Any]) -> None:
    tag = uuid.uuid4().hex[:6]
    env, proxy = stack["environment"], f"e2e-refire-{tag}"
    samples.seed_proxy(stack, proxy)
    started = samples.seed_stats(stack, env, proxy, samples.scenario("target"))
    first = samples.incident(
        stack, incident_id=f"0.a-{tag}", proxy=proxy, environment=env, started_at=started, family="target"
    )
    samples.publish(stack, "alerts", [first])
    assert run_command(stack, {"command": "tickets"})["succeededCount"] == 1
    (ticket,) = [i for i in _issues(stack, "gatehouse") if proxy in i["title"]]

    again = samples.incident(
        stack,
        incident_id=f"0.b-{tag}",
        proxy=proxy,
        environment=env,
        started_at=started + 60,
        family="target",
    )
    closed = samples.incident(
        stack,
        incident_id=f"0.a-{tag}",
        proxy=proxy,
        environment=env,
        started_at=started,
        family="target",
        status="closed",
        ended_at=int(time.time()),
    )
    samples.publish(stack, "alerts", [again, closed])
    assert run_command(stack, {"command": "tickets"})["succeededCount"] == 1
    assert [i["number"] for i in _issues(stack, "gatehouse") if proxy in i["title"]] == [ticket["number"]]
    comments = wait_for(lambda: _comments(stack, ticket["number"]) or None, what="comments on the ticket")
    text = "\n".join(comments)
    assert "0.b-" in text and "cleared" in text.lower()


def test_plan_mode_changes_nothing_and_cli_lists_tickets(stack: dict[str, Any]) -> None:
    tag = uuid.uuid4().hex[:6]
    env, proxy = stack["environment"], f"e2e-plan-{tag}"
    samples.seed_proxy(stack, proxy)
    started = samples.seed_stats(stack, env, proxy, samples.scenario("proxy"))
    samples.publish(
        stack,
        "alerts",
        [samples.incident(stack, incident_id=f"0.p-{tag}", proxy=proxy, environment=env, started_at=started)],
    )
    cli = [sys.executable, "-m", "gatehouse.cli", "--stack", stack["state_dir"]]
    plan = subprocess.run(
        [*cli, "tickets", "--plan", "--json"], capture_output=True, text=True, timeout=120, check=True
    )
    report = json.loads(plan.stdout)
    assert report["mode"] == "plan" and report["acked"] == 0
    assert not [i for i in _issues(stack, "gatehouse") if proxy in i["title"]]
    assert run_command(stack, {"command": "tickets"})["succeededCount"] == 1  # the message was left for it
    listed = subprocess.run(
        [*cli, "tickets", "list", "--json"], capture_output=True, text=True, timeout=60, check=True
    )
    titles = [json.loads(line)["title"] for line in listed.stdout.splitlines()]
    assert any(proxy in t and "proxy-bound" in t for t in titles), titles
