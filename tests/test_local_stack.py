"""`gatehouse local up|down`: the JSON a client needs, the state file, and two stacks side by side."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests

from gatehouse.local.processes import alive

pytestmark = pytest.mark.stack
REQUIRED = {
    "pubsub_emulator",
    "firestore_emulator",
    "storage",
    "cloudrun",
    "apigee",
    "iam",
    "secretmanager",
    "orgpolicy",
    "github",
    "logging",
    "scheduler",
    "project",
    "region",
    "organization",
    "environment",
    "topics",
    "subscriptions",
    "functions",
    "jobs",
}


def test_a_second_stack_runs_beside_the_first_and_stops_alone(stack: dict[str, Any], tmp_path: Path) -> None:
    cli = [sys.executable, "-m", "gatehouse.cli", "local"]
    up = subprocess.run(
        [*cli, "up", "--state-dir", str(tmp_path)], capture_output=True, text=True, timeout=180, check=True
    )
    second = json.loads(up.stdout.strip().splitlines()[-1])  # the last line is the stack's JSON
    try:
        assert set(second) >= REQUIRED
        assert json.loads((tmp_path / "stack.json").read_text())["apigee"] == second["apigee"]
        assert second["apigee"] != stack["apigee"] and second["pubsub_emulator"] != stack["pubsub_emulator"]
        for url in (
            second["apigee"],
            second["cloudrun"],
            second["secretmanager"],
            second["github"],
            second["logging"],
            second["scheduler"],
        ):
            assert requests.get(f"{url}/_standin/health", timeout=5).ok
        env = subprocess.run(
            [*cli, "env", "--state-dir", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        assert f"export GATEHOUSE_APIGEE_ENDPOINT={second['apigee']}" in env
        refused = subprocess.run(
            [*cli, "up", "--state-dir", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        # the user must act (`local down` first): exit 2, one line, no traceback (README "CLI")
        assert refused.returncode == 2 and "already running" in refused.stderr
        assert "Traceback" not in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    finally:
        subprocess.run(
            [*cli, "down", "--state-dir", str(tmp_path)], capture_output=True, timeout=120, check=True
        )
    assert not any(alive(int(p["pid"])) for p in second["processes"])
    assert all(alive(int(p["pid"])) for p in stack["processes"])  # the other stack is untouched
    assert requests.get(f"{stack['apigee']}/_standin/health", timeout=5).ok


def test_cloud_storage_is_an_emulator_the_official_client_reaches(
    stack: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """STORAGE_EMULATOR_HOST, as settings_env exports it, is all google-cloud-storage needs."""
    from google.cloud import storage

    from gatehouse.local.stack import settings_env

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", settings_env(stack)["STORAGE_EMULATOR_HOST"])
    client = storage.Client(project=stack["project"])
    bucket = client.create_bucket("gatehouse-stack-probe")
    try:
        bucket.blob("probe/hello.json").upload_from_string(b'{"ok": true}', content_type="application/json")
        blob = client.bucket("gatehouse-stack-probe").get_blob("probe/hello.json")
        assert blob is not None and blob.generation and blob.content_type == "application/json"
        assert blob.download_as_bytes() == b'{"ok": true}'
        with pytest.raises(Exception) as refused:  # a reused bucket name is refused, as by GCS
            client.create_bucket("gatehouse-stack-probe")
        assert getattr(refused.value, "code", None) == 409
    finally:
        for blob in client.list_blobs("gatehouse-stack-probe"):
            blob.delete()
        client.bucket("gatehouse-stack-probe").delete()
