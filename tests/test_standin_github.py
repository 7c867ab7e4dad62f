"""The GitHub Issues stand-in's own contract: auth, shapes, pagination, state_reason, persistence,
stats and faults (what GitHubTracker's tests rely on)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from gatehouse.local import processes
from gatehouse.local.standins import github
from gatehouse.local.standins.server import Handle

AUTH = {"Authorization": "Bearer test-token", "Accept": "application/vnd.github+json"}
REPO = "shop/platform"


@pytest.fixture
def stand(tmp_path: Path) -> Iterator[Handle]:
    handle = github.start(state_file=str(tmp_path / "github.json"))
    yield handle
    handle.stop()


def api(stand: Handle, method: str, path: str, **kwargs: Any) -> requests.Response:
    headers = {**AUTH, **kwargs.pop("headers", {})}
    return requests.request(method, f"{stand.url}{path}", headers=headers, timeout=10, **kwargs)


def create(stand: Handle, title: str, labels: list[str] | None = None, repo: str = REPO) -> dict[str, Any]:
    response = api(
        stand, "POST", f"/repos/{repo}/issues", json={"title": title, "body": "b", "labels": labels}
    )
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def test_auth_is_required(stand: Handle) -> None:
    for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": "Basic abc"}):
        response = requests.get(f"{stand.url}/repos/{REPO}/issues", headers=headers, timeout=10)
        assert response.status_code == 401 and response.json()["message"] in (
            "Requires authentication",
            "Bad credentials",
        )
    assert api(stand, "GET", f"/repos/{REPO}/issues").status_code == 200
    assert requests.get(f"{stand.url}/_standin/health", timeout=10).json()["status"] == "ok"


def test_issue_shape_and_numbers_per_repository(stand: Handle) -> None:
    first = create(stand, "one", ["gatehouse", "gatehouse-fp-1"])
    second = create(stand, "two", ["Gatehouse"])  # labels match case-insensitively, keep the first spelling
    other = create(stand, "elsewhere", repo="shop/other")
    assert (first["number"], second["number"], other["number"]) == (1, 2, 1)
    assert first["html_url"] == f"{stand.url}/{REPO}/issues/1"
    assert first["url"] == f"{stand.url}/repos/{REPO}/issues/1"
    assert first["state"] == "open" and first["state_reason"] is None and first["closed_at"] is None
    assert [label["name"] for label in first["labels"]] == ["gatehouse", "gatehouse-fp-1"]
    assert [label["name"] for label in second["labels"]] == ["gatehouse"]
    assert api(stand, "GET", f"/repos/{REPO}/issues/1").json()["title"] == "one"
    assert api(stand, "GET", f"/repos/{REPO}/issues/99").status_code == 404
    bad = api(stand, "POST", f"/repos/{REPO}/issues", json={"title": ""})
    assert bad.status_code == 422 and bad.json()["message"] == "Validation Failed"


def test_label_listing_pages_with_link_headers(stand: Handle) -> None:
    for n in range(105):
        create(stand, f"t{n}", ["gatehouse-fp-x"] if n % 2 == 0 else ["other"])
    api(stand, "PATCH", f"/repos/{REPO}/issues/1", json={"state": "closed"})
    requests.post(
        f"{stand.url}/_standin/github/pulls",
        json={"repo": REPO, "title": "a PR", "labels": ["gatehouse-fp-x"]},
        timeout=10,
    )
    seen: list[dict[str, Any]] = []
    url: str | None = f"{stand.url}/repos/{REPO}/issues?labels=gatehouse-fp-x&state=all&per_page=20"
    pages = 0
    while url:
        response = requests.get(url, headers=AUTH, timeout=10)
        seen += response.json()
        url = response.links.get("next", {}).get("url")
        pages += 1
        if url:
            assert 'rel="last"' in response.headers["Link"]
    assert pages == 3 and len(seen) == 54  # 53 issues + 1 pull request, newest first
    assert seen[0]["number"] == 106 and "pull_request" in seen[0]
    assert seen[-1]["number"] == 1 and seen[-1]["state"] == "closed"
    open_only = api(
        stand, "GET", f"/repos/{REPO}/issues", params={"labels": "gatehouse-fp-x", "per_page": 100}
    )
    assert len(open_only.json()) == 53 and "Link" not in open_only.headers
    both = api(
        stand, "GET", f"/repos/{REPO}/issues", params={"labels": "gatehouse-fp-x,other", "state": "all"}
    )
    assert both.json() == []


def test_close_as_not_planned_and_reopen(stand: Handle) -> None:
    create(stand, "one")
    closed = api(
        stand, "PATCH", f"/repos/{REPO}/issues/1", json={"state": "closed", "state_reason": "not_planned"}
    ).json()
    assert closed["state"] == "closed" and closed["state_reason"] == "not_planned" and closed["closed_at"]
    relabelled = api(stand, "PATCH", f"/repos/{REPO}/issues/1", json={"labels": ["wontfix"]}).json()
    assert relabelled["state_reason"] == "not_planned" and relabelled["labels"][0]["name"] == "wontfix"
    reopened = api(stand, "PATCH", f"/repos/{REPO}/issues/1", json={"state": "open"}).json()
    assert reopened["state_reason"] == "reopened" and reopened["closed_at"] is None
    default = api(stand, "PATCH", f"/repos/{REPO}/issues/1", json={"state": "closed"}).json()
    assert default["state_reason"] == "completed"
    bad = api(stand, "PATCH", f"/repos/{REPO}/issues/1", json={"state": "closed", "state_reason": "nope"})
    assert bad.status_code == 422


def test_comments(stand: Handle) -> None:
    create(stand, "one")
    for n in range(3):
        response = api(stand, "POST", f"/repos/{REPO}/issues/1/comments", json={"body": f"c{n}"})
        assert response.status_code == 201 and response.json()["body"] == f"c{n}"
    listed = api(stand, "GET", f"/repos/{REPO}/issues/1/comments", params={"per_page": 2})
    assert [c["body"] for c in listed.json()] == ["c0", "c1"] and 'rel="next"' in listed.headers["Link"]
    assert api(stand, "GET", f"/repos/{REPO}/issues/1").json()["comments"] == 3
    assert api(stand, "POST", f"/repos/{REPO}/issues/1/comments", json={"body": ""}).status_code == 422
    assert api(stand, "POST", f"/repos/{REPO}/issues/9/comments", json={"body": "x"}).status_code == 404


def test_state_survives_a_restart(tmp_path: Path) -> None:
    state = str(tmp_path / "state.json")
    first = github.start(state_file=state)
    try:
        create(first, "kept", ["gatehouse"])
        api(first, "POST", f"/repos/{REPO}/issues/1/comments", json={"body": "c"})
    finally:
        first.stop()
    second = github.start(state_file=state)
    try:
        assert api(second, "GET", f"/repos/{REPO}/issues/1").json()["comments"] == 1
        assert create(second, "next")["number"] == 2
    finally:
        second.stop()


def test_stats_and_faults(stand: Handle) -> None:
    create(stand, "one")
    api(stand, "GET", f"/repos/{REPO}/issues/1")
    api(stand, "GET", f"/repos/{REPO}/issues/1")
    stats = requests.get(f"{stand.url}/_standin/stats", timeout=10).json()
    assert stats["calls"] == {
        "POST /repos/{owner}/{repo}/issues": 1,
        "GET /repos/{owner}/{repo}/issues/{issue_number}": 2,
    }
    assert stats["total"] == 3
    requests.post(f"{stand.url}/_standin/stats/reset", timeout=10)
    assert requests.get(f"{stand.url}/_standin/stats", timeout=10).json()["total"] == 0

    faults = {"error_rate": 1.0, "statuses": [429], "routes": ["issues/{issue_number}"], "times": 1}
    assert requests.post(f"{stand.url}/_standin/faults", json=faults, timeout=10).status_code == 200
    limited = api(stand, "GET", f"/repos/{REPO}/issues/1")
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "1"
    assert api(stand, "GET", f"/repos/{REPO}/issues/1").status_code == 200  # the fault is spent
    requests.post(f"{stand.url}/_standin/faults", json={"error_rate": 1.0, "statuses": [403]}, timeout=10)
    exhausted = api(stand, "GET", f"/repos/{REPO}/issues")
    assert exhausted.status_code == 403 and exhausted.headers["x-ratelimit-remaining"] == "0"
    assert int(exhausted.headers["x-ratelimit-reset"]) >= int(time.time())
    requests.post(f"{stand.url}/_standin/faults", json={"latency_ms": 200}, timeout=10)
    started = time.monotonic()
    assert api(stand, "GET", f"/repos/{REPO}/issues").status_code == 200
    assert time.monotonic() - started >= 0.2
    requests.delete(f"{stand.url}/_standin/faults", timeout=10)
    bad = requests.post(f"{stand.url}/_standin/faults", json={"error_rate": 2}, timeout=10)
    assert bad.status_code == 400


def test_runs_as_a_module(tmp_path: Path) -> None:
    port = processes.free_port()
    managed = processes.start_python(
        "github-standin",
        [
            "-m",
            "gatehouse.local.standins.github",
            "--port",
            str(port),
            "--state-file",
            str(tmp_path / "s.json"),
        ],
        port=port,
        log_dir=tmp_path,
        ready_path="/_standin/health",
    )
    try:
        response = requests.post(
            f"{managed.url}/repos/{REPO}/issues", json={"title": "x"}, headers=AUTH, timeout=10
        )
        assert response.status_code == 201
        assert response.json()["html_url"] == f"http://127.0.0.1:{port}/{REPO}/issues/1"
    finally:
        processes.stop(managed)
    assert (tmp_path / "s.json").exists()
    help_text = subprocess.run(
        [sys.executable, "-m", "gatehouse.local.standins.github", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "--state-file" in help_text


def test_a_token_without_push_access_has_its_labels_dropped_silently(stand: Handle) -> None:
    """GitHub: "Only users with push access can set labels for new issues. Labels are silently
    dropped otherwise." The stand-in models such a token (registered through a test hook)."""
    hook = requests.post(
        f"{stand.url}/_standin/github/tokens", json={"token": "read-only", "push": False}, timeout=10
    )
    assert hook.status_code == 200
    weak = {"Authorization": "Bearer read-only"}
    response = api(
        stand,
        "POST",
        f"/repos/{REPO}/issues",
        headers=weak,
        json={"title": "t", "body": "b", "labels": ["gatehouse", "gatehouse-fp-1"]},
    )
    assert response.status_code == 201 and response.json()["labels"] == []
    number = response.json()["number"]
    patched = api(stand, "PATCH", f"/repos/{REPO}/issues/{number}", headers=weak, json={"labels": ["x"]})
    assert patched.status_code == 200 and patched.json()["labels"] == []
    assert create(stand, "full access", ["gatehouse"])["labels"][0]["name"] == "gatehouse"
    listed = api(stand, "GET", f"/repos/{REPO}/issues", params={"labels": "gatehouse-fp-1", "state": "all"})
    assert listed.json() == []  # a ticket created that way cannot be found by its label
    assert requests.get(f"{stand.url}/_standin/state", timeout=10).json()["tokens"] == {
        "read-only": {"push": False}
    }
