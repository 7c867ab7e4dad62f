"""Rotation end to end on the local stack: targets declared on secrets in the Secret Manager stand-in,
keys in the IAM stand-in; a `rotate` command on the commands topic makes on_command start the
rotate-credentials job (a process the Cloud Run stand-in runs); a SECRET_ROTATE notification from
Secret Manager reaches on_command and rotates that one secret inline."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import uuid
from typing import Any

import pytest
import requests
from google.oauth2 import service_account

from gatehouse.local import samples
from gatehouse.local.demo import run_command
from tests.conftest import read_log, wait_for

pytestmark = pytest.mark.stack


def _secret(stack: dict[str, Any], name: str) -> dict[str, Any]:
    return requests.get(
        f"{stack['secretmanager']}/v1/projects/{stack['project']}/secrets/{name}", timeout=10
    ).json()


def _access(stack: dict[str, Any], name: str, version: str) -> bytes:
    url = f"{stack['secretmanager']}/v1/projects/{stack['project']}/secrets/{name}/versions/{version}:access"
    return base64.b64decode(requests.get(url, timeout=10).json()["payload"]["data"])


def _keys(stack: dict[str, Any], account: str) -> list[dict[str, Any]]:
    email = f"{account}@{stack['project']}.iam.gserviceaccount.com"
    url = f"{stack['iam']}/v1/projects/{stack['project']}/serviceAccounts/{email}/keys"
    return list(requests.get(url, params={"keyTypes": "USER_MANAGED"}, timeout=10).json().get("keys", []))


def test_rotate_command_runs_the_job_and_a_second_run_changes_nothing(stack: dict[str, Any]) -> None:
    tag = uuid.uuid4().hex[:6]
    targets = [
        {"secret": f"e2e-key-{tag}", "kind": "sa-key", "account": f"e2e-acct-{tag}"},
        {"secret": f"e2e-token-{tag}", "kind": "generated", "annotations": {"gatehouse-length": "40"}},
    ]
    samples.seed_rotation_targets(stack, targets)
    execution = run_command(stack, {"command": "rotate", "secret": "all", "mode": "apply"})
    assert execution["succeededCount"] == 1

    key_secret = _secret(stack, f"e2e-key-{tag}")
    current = key_secret["versionAliases"]["current"]
    key_file = json.loads(_access(stack, f"e2e-key-{tag}", "current"))
    # the stored credential is a real key: it loads, signs, and IAM knows it (enabled)
    credentials = service_account.Credentials.from_service_account_info(key_file)
    assert credentials.signer.sign(b"gatehouse")
    keys = _keys(stack, f"e2e-acct-{tag}")
    assert [k["name"].rsplit("/", 1)[-1] for k in keys] == [key_file["private_key_id"]]
    assert not keys[0].get("disabled")
    assert len(_access(stack, f"e2e-token-{tag}", "current").decode()) == 40

    # age-gated: running again creates nothing
    run_command(stack, {"command": "rotate", "secret": "all", "mode": "apply"})
    assert _secret(stack, f"e2e-key-{tag}")["versionAliases"]["current"] == current
    assert len(_keys(stack, f"e2e-acct-{tag}")) == 1


def test_secret_rotate_notification_rotates_that_secret_keeping_the_old_key(stack: dict[str, Any]) -> None:
    tag = uuid.uuid4().hex[:6]
    name = f"e2e-notified-{tag}"
    samples.seed_rotation_targets(stack, [{"secret": name, "kind": "sa-key", "account": f"e2e-notif-{tag}"}])
    run_command(stack, {"command": "rotate", "secret": "all", "mode": "apply"})
    first = _secret(stack, name)["versionAliases"]["current"]
    full = f"projects/{stack['project']}/secrets/{name}"
    requests.post(
        f"{stack['secretmanager']}/_standin/secretmanager/rotate", json={"secret": full}, timeout=10
    ).raise_for_status()
    wait_for(
        lambda: _secret(stack, name)["versionAliases"].get("current") not in (None, first),
        timeout=60,
        what="the notified secret to get a new current version",
    )
    aliases = _secret(stack, name)["versionAliases"]
    assert aliases.get("previous") == first
    # grace period: the old key stays enabled next to the new one
    keys = _keys(stack, f"e2e-notif-{tag}")
    assert len(keys) == 2 and not any(k.get("disabled") for k in keys)

    def logged() -> list[dict[str, Any]]:  # written once the run's report is complete: wait for it
        return [
            json.loads(x)
            for x in read_log(stack, "on_command").splitlines()
            if name in x and "rotate apply" in x
        ]

    lines = wait_for(logged, timeout=30, what="on_command's log line for the notified secret")
    assert [(x["trigger"], x["status"]) for x in lines] == [("SECRET_ROTATE", "rotated")]


def test_cli_plan_changes_nothing_and_reports_every_target(stack: dict[str, Any]) -> None:
    tag = uuid.uuid4().hex[:6]
    samples.seed_rotation_targets(stack, [{"secret": f"e2e-plan-{tag}", "kind": "generated"}])
    cli = [sys.executable, "-m", "gatehouse.cli", "--stack", stack["state_dir"], "rotate", "--plan", "--json"]
    result = subprocess.run(cli, capture_output=True, text=True, timeout=120, check=False)
    report = json.loads(result.stdout)
    mine = [t for t in report["targets"] if t["secret"].endswith(f"/e2e-plan-{tag}")]
    assert mine and mine[0]["status"] == "planned"
    assert (
        "versionAliases" not in _secret(stack, f"e2e-plan-{tag}")
        or not _secret(stack, f"e2e-plan-{tag}")["versionAliases"]
    )
