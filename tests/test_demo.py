"""`make demo` twice in a row, and after `make down`: both work (issue 9), and `down` says what it
stops, process by process. The demo's closing hint is run as printed."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from gatehouse.local.processes import alive
from gatehouse.local.stack import ORGANIZATION

pytestmark = pytest.mark.stack
CLI = [sys.executable, "-m", "gatehouse.cli"]


def demo(state_dir: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [*CLI, "demo", "--state-dir", str(state_dir)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    return done


def down(state_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "local", "down", "--state-dir", str(state_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def orders_product_operations(state: dict[str, object]) -> None:
    """The demo's orders service serves its spec: its API product's operations are the spec's."""
    listed = requests.get(
        f"{state['apigee']}/v1/organizations/{ORGANIZATION}/apiproducts",
        params={"expand": "true"},
        timeout=10,
    ).json()
    found = sorted(
        (op["resource"], tuple(op.get("methods", [])))
        for product in listed.get("apiProduct", [])
        for config in product.get("operationGroup", {}).get("operationConfigs", [])
        if config["apiSource"].startswith("orders-")
        for op in config["operations"]
    )
    assert found == [("/orders", ("GET", "POST")), ("/orders/*", ("GET",))], found


def test_demo_runs_twice_and_again_after_down(tmp_path: Path) -> None:
    state_dir = tmp_path / "stack"
    try:
        first = demo(state_dir)
        assert "product" in first.stdout.split("rotation", 1)[0]
        orders_product_operations(json.loads((state_dir / "stack.json").read_text()))
        again = demo(state_dir)  # the stack is running: deploy the fleet again, nothing changes
        table = again.stdout.split("rotation", 1)[0]
        assert table.count("unchanged") == 5 and "registered" not in table.split("┩", 1)[1].split("└")[0]

        processes = json.loads((state_dir / "stack.json").read_text())["processes"]
        stopped = down(state_dir)
        assert stopped.returncode == 0, stopped.stderr
        for proc in processes:  # each process is named as it stops, not only a count at the end
            assert f"stopped {proc['name']} (" in stopped.stderr
        assert not any(alive(int(p["pid"])) for p in processes)

        after_down = demo(state_dir)  # the stand-ins kept their state: seeding must not 409
        hint = [line.strip() for line in after_down.stdout.splitlines() if line.strip().endswith(" status")]
        assert hint, after_down.stdout
        argv = shlex.split(hint[-1])
        assert Path(argv[0]).name == "gatehouse"
        status = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        assert status.returncode == 0, status.stderr
        assert "orders" in status.stdout
    finally:
        down(state_dir)
