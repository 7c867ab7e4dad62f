"""Shared fixtures. The ``stack`` fixture starts the real local stack once per session: the
Pub/Sub and Firestore emulators, the Apigee and Cloud Run stand-ins and both functions under
functions-framework, wired with push subscriptions, exactly as `gatehouse local up` does."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

T = TypeVar("T")


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from gatehouse.local.stack import down, settings_env, up

    state_dir = tmp_path_factory.mktemp("stack")
    # sync: deletions undeploy, so the e2e tests can see every policy path; two worker processes per
    # function, so leases are exercised across processes, not only threads
    state = up(state_dir, extra_env={"GATEHOUSE_POLICY": "sync", "WORKERS": "2"})
    saved = dict(os.environ)
    os.environ.update(settings_env(state))
    try:
        yield state
    finally:
        os.environ.clear()
        os.environ.update(saved)
        down(state_dir)


def wait_for(
    probe: Callable[[], T | None], *, timeout: float = 30.0, interval: float = 0.2, what: str = "condition"
) -> T:
    """Poll ``probe`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def read_log(state: dict[str, Any], name: str) -> str:
    return Path(state["state_dir"], "logs", f"{name}.log").read_text(errors="replace")
