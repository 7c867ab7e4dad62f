"""GitHubTracker over HTTP against the GitHub stand-in, JiraTracker against a small in-test fake of
the Jira Cloud endpoints it calls, and the Markdown -> ADF conversion. Rate limits, error mapping,
and the token never showing up in logs, output, errors or reprs."""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
import requests
from google.api_core import exceptions as gexc
from werkzeug.wrappers import Request, Response

from gatehouse.adapters.trackers import (
    GitHubTracker,
    JiraTracker,
    TrackerRateLimitedError,
    fit_adf,
    jira_label,
    markdown_to_adf,
    read_secret,
    tracker_from_settings,
)
from gatehouse.errors import InputError, NotFoundError, PermanentError, TransientError
from gatehouse.local.standins import github
from gatehouse.local.standins.server import Handle, serve
from gatehouse.tickets.settings import TicketSettings
from tests.test_tickets_job import STARTED, World
from tests.tickets_fakes import T0, direct_bundle, incident

TOKEN = "ghp_S3cr3tT0kenValue0123456789abcdef"
JIRA_TOKEN = "ATATT3xJiraSecretToken987654321"
REPO = "shop/platform"


class Sleeps:
    """Records sleeps instead of sleeping (retry waits and the creation limiter)."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


class Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.getMessage()} {record.__dict__}")


@pytest.fixture
def logs() -> Iterator[Captured]:
    """Everything logged at DEBUG by gatehouse, requests and urllib3 (propagating or not)."""
    handler = Captured()
    loggers = [logging.getLogger(n) for n in ("", "gatehouse", "urllib3", "requests")]
    saved = [(lg, lg.level) for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        for lg, level in saved:
            lg.removeHandler(handler)
            lg.setLevel(level)


@pytest.fixture
def stand() -> Iterator[Handle]:
    handle = github.start()
    yield handle
    handle.stop()


def gh(stand: Handle, **kwargs: Any) -> GitHubTracker:
    kwargs.setdefault("creates_per_minute", 100_000)
    kwargs.setdefault("sleep", Sleeps())
    return GitHubTracker(REPO, TOKEN, api=stand.url, **kwargs)


def faults(stand: Handle, **spec: Any) -> None:
    requests.post(f"{stand.url}/_standin/faults", json=spec, timeout=10).raise_for_status()


def calls(stand: Handle) -> dict[str, int]:
    return cast(dict[str, int], requests.get(f"{stand.url}/_standin/stats", timeout=10).json()["calls"])


def patch(stand: Handle, number: str, **changes: Any) -> None:
    requests.patch(
        f"{stand.url}/repos/{REPO}/issues/{number}",
        json=changes,
        headers={"Authorization": "Bearer human"},
        timeout=10,
    ).raise_for_status()


# ------------------------------------------------------------------------------------------ GitHub


def test_github_create_get_comment(stand: Handle) -> None:
    tracker = gh(stand)
    ref = tracker.create_issue("t" * 300, "**body**", ["gatehouse", "gatehouse-fp-1", "gatehouse"])
    assert ref.id == "1" and ref.url == f"{stand.url}/{REPO}/issues/1"
    tracker.comment(ref.id, "an update")
    state = tracker.get(ref.id)
    assert state.state == "open" and state.closed_reason is None and state.closed_at is None
    assert state.labels == ("gatehouse", "gatehouse-fp-1") and state.url == ref.url
    issue = requests.get(f"{stand.url}/_standin/state", timeout=10).json()["repos"][REPO]
    assert len(issue["issues"]["1"]["title"]) == 256
    assert [c["body"] for c in issue["comments"]["1"]] == ["an update"]
    with pytest.raises(NotFoundError):
        tracker.get("99")
    with pytest.raises(InputError):
        tracker.get("../1")


def test_github_find_by_label_pages_and_skips_pull_requests(stand: Handle) -> None:
    tracker = gh(stand)
    for n in range(120):
        tracker.create_issue(f"t{n}", "b", ["gatehouse-fp-x"])
    tracker.create_issue("other", "b", ["gatehouse-fp-y"])
    patch(stand, "3", state="closed", state_reason="not_planned")
    requests.post(
        f"{stand.url}/_standin/github/pulls",
        json={"repo": REPO, "title": "pr", "labels": ["gatehouse-fp-x"]},
        timeout=10,
    ).raise_for_status()
    requests.post(f"{stand.url}/_standin/stats/reset", timeout=10)
    found = tracker.find_by_label("gatehouse-fp-x")
    assert sorted(int(r.id) for r in found) == list(range(1, 121))  # closed ones too, no pull request
    assert calls(stand) == {"GET /repos/{owner}/{repo}/issues": 2}  # two pages of 100
    assert [r.id for r in tracker.find_by_label("gatehouse-fp-y")] == ["121"]
    assert tracker.find_by_label("gatehouse-fp-none") == []


def test_github_list_tickets_shows_title_state_and_comments(stand: Handle) -> None:
    tracker = gh(stand)
    ref = tracker.create_issue("orders is slow", "b", ["gatehouse", "gatehouse-fp-a"])
    tracker.comment(ref.id, "re-fired")
    closed = tracker.create_issue("catalog is slow", "b", ["gatehouse"])
    patch(stand, closed.id, state="closed", state_reason="not_planned")
    listed = {t.id: t for t in tracker.list_tickets("gatehouse")}
    assert listed[ref.id].title == "orders is slow" and listed[ref.id].state == "open"
    assert listed[ref.id].comments == 1 and "gatehouse-fp-a" in listed[ref.id].labels
    assert listed[closed.id].state == "closed" and listed[closed.id].closed_reason == "not_planned"


@pytest.mark.parametrize(
    ("reason", "expected"),
    [("not_planned", "not_planned"), ("completed", "completed"), ("duplicate", "not_planned")],
)
def test_github_closed_reasons_round_trip(stand: Handle, reason: str, expected: str) -> None:
    tracker = gh(stand)
    ref = tracker.create_issue("t", "b", ["gatehouse"])
    patch(stand, ref.id, state="closed", state_reason=reason, labels=["gatehouse", "wontfix"])
    state = tracker.get(ref.id)
    assert state.state == "closed" and state.closed_reason == expected
    assert state.labels == ("gatehouse", "wontfix") and state.closed_at is not None
    patch(stand, ref.id, state="open")
    reopened = tracker.get(ref.id)
    assert reopened.state == "open" and reopened.closed_reason is None and reopened.closed_at is None


def test_github_429_with_retry_after_is_retried(stand: Handle) -> None:
    sleeps = Sleeps()
    tracker = gh(stand, sleep=sleeps)
    faults(stand, error_rate=1.0, statuses=[429], times=1)
    ref = tracker.create_issue("t", "b", ["gatehouse"])  # not idempotent, but a 429 surely did nothing
    assert ref.id == "1" and sleeps.waits == [1.0]
    assert calls(stand) == {"POST /repos/{owner}/{repo}/issues": 2}


def test_github_exhausted_limit_waits_until_the_reset(stand: Handle) -> None:
    sleeps = Sleeps()
    tracker = gh(stand, sleep=sleeps)
    tracker.create_issue("t", "b", ["gatehouse"])
    faults(stand, error_rate=1.0, statuses=[403], times=1)  # x-ratelimit-remaining: 0, reset in 1 s
    assert tracker.get("1").state == "open"
    assert len(sleeps.waits) == 1 and 1.0 <= sleeps.waits[0] <= 2.0


def test_github_long_rate_limit_is_left_for_the_next_run(stand: Handle) -> None:
    tracker = gh(stand, retry_max_wait=0.5)
    faults(stand, error_rate=1.0, statuses=[429], times=1)  # Retry-After: 1 > 0.5
    with pytest.raises(TrackerRateLimitedError) as caught:
        tracker.create_issue("t", "b", ["gatehouse"])
    assert isinstance(caught.value, TransientError) and caught.value.retry_after == 1.0
    assert calls(stand) == {"POST /repos/{owner}/{repo}/issues": 1}


def test_github_5xx_retries_reads_but_not_creations(stand: Handle) -> None:
    tracker = gh(stand)
    tracker.create_issue("t", "b", ["gatehouse"])
    faults(stand, error_rate=1.0, statuses=[502], times=1)
    with pytest.raises(TransientError):  # the issue may exist: the executor's claim settles it
        tracker.create_issue("t2", "b", ["gatehouse"])
    faults(stand, error_rate=1.0, statuses=[502], times=1)
    assert tracker.get("1").state == "open"
    assert calls(stand)["POST /repos/{owner}/{repo}/issues"] == 2
    assert calls(stand)["GET /repos/{owner}/{repo}/issues/{issue_number}"] == 2


def test_github_permission_errors_are_permanent(stand: Handle) -> None:
    tracker = gh(stand)
    faults(stand, error_rate=1.0, statuses=[401], times=1)
    with pytest.raises(PermanentError, match="check the tracker token's permissions") as caught:
        tracker.find_by_label("gatehouse")
    assert str(caught.value).startswith("GitHub GET /repos/shop/platform/issues: HTTP 401")


def test_github_labels_dropped_without_push_access_are_reported(stand: Handle) -> None:
    """The created issue's labels are compared with the requested ones; a run says so in its report,
    because finding a ticket by its fingerprint label (crash recovery) then fails."""
    requests.post(
        f"{stand.url}/_standin/github/tokens", json={"token": "read-only", "push": False}, timeout=10
    )
    weak = GitHubTracker(REPO, "read-only", stand.url, sleep=Sleeps(), creates_per_minute=100_000)
    ref = weak.create_issue("t", "b", ["gatehouse", "gatehouse-fp-1"])
    assert ref.missing_labels == ("gatehouse", "gatehouse-fp-1")
    full = GitHubTracker(REPO, TOKEN, stand.url, sleep=Sleeps(), creates_per_minute=100_000)
    assert full.create_issue("t", "b", ["Gatehouse", "gatehouse-fp-2"]).missing_labels == ()

    world = World(tracker=weak)  # type: ignore[arg-type]
    world.publish(incident(incident_id="i-1", started_at=STARTED))
    report = world.run()
    assert report.actions() == {"create": 1}
    (warning,) = report.warnings
    assert "without the label(s) gatehouse, apigee-latency, gatehouse-fp-" in warning
    assert "push access" in warning
    assert report.to_dict()["warnings"] == [warning]


def test_digest_and_claims_survive_github_faults_over_the_cap(stand: Handle) -> None:
    """The hourly cap reached while GitHub answers 5xx, 403 (exhausted limit) and 429 at times: runs
    go on until everything is acknowledged, and then every claim ended with a ticket or in the
    digest, the digest lists every overflowed problem, no comment waits unposted, and the hour's
    count is the number of real tickets."""
    tracker = GitHubTracker(REPO, TOKEN, stand.url, sleep=Sleeps(), creates_per_minute=100_000)
    world = World(settings=TicketSettings(max_new_tickets_per_hour=3), tracker=tracker)  # type: ignore[arg-type]
    faults = {
        "error_rate": 0.5,
        "statuses": [502, 503, 403, 429],
        "routes": ["POST /repos/{owner}/{repo}/issues"],
        "seed": 7,
    }
    requests.post(f"{stand.url}/_standin/faults", json=faults, timeout=10).raise_for_status()
    for wave in range(3):
        world.publish(
            *(
                incident(incident_id=f"i-{wave}-{p}", proxy=f"svc-{p}", started_at=STARTED)
                for p in range(wave * 3, wave * 3 + 4)
            )
        )
        world.run()
    for _ in range(6):
        world.run()
    requests.delete(f"{stand.url}/_standin/faults", timeout=10).raise_for_status()
    report = world.run()
    assert report.exit_code == 0 and world.sub.pending == 0, report.to_dict()

    issues = list(
        requests.get(f"{stand.url}/_standin/state", timeout=10).json()["repos"][REPO]["issues"].values()
    )
    comments = requests.get(f"{stand.url}/_standin/state", timeout=10).json()["repos"][REPO]["comments"]
    tickets = [i for i in issues if not i["title"].startswith("[gatehouse] latency digest")]
    digests = [i for i in issues if i["title"].startswith("[gatehouse] latency digest")]
    fingerprints = world.ledger.fingerprints()
    assert {d["state"] for d in fingerprints} <= {"open", "digest"}, fingerprints
    assert all(d["pending_comment"] is None for d in fingerprints)
    owned = {d["ticket_id"] for d in fingerprints if d["state"] == "open"}
    assert owned == {str(t["number"]) for t in tickets} and len(owned) == 3
    assert world.ledger.doc("bucket-2025031415") == {"count": 3}
    (digest,) = digests
    text = digest["body"] + "".join(c["body"] for c in comments.get(str(digest["number"]), []))
    digest_doc = world.ledger.doc("digest-2025031415")
    assert digest_doc["state"] == "open" and digest_doc["pending_comment"] is None
    listed = {item["proxy"]: item["label"] for item in digest_doc["items"]}
    ticketed = {t["title"].split()[1] for t in tickets}
    assert ticketed.isdisjoint(listed) and ticketed | set(listed) == {f"svc-{p}" for p in range(10)}
    assert all(label in text for label in listed.values())  # each one really posted


def test_github_creations_are_paced() -> None:
    sleeps = Sleeps()
    tracker = GitHubTracker(REPO, TOKEN, api="http://127.0.0.1:9", creates_per_minute=60, sleep=sleeps)
    for _ in range(3):
        tracker._http.creates.acquire()
    assert len(sleeps.waits) == 2 and sleeps.waits[1] > sleeps.waits[0] >= 0.9


def test_github_never_sends_the_token_to_another_host(stand: Handle) -> None:
    tracker = gh(stand)
    with pytest.raises(PermanentError, match="refusing to send the token"):
        tracker._http.request("GET", "https://evil.example/repos/shop/platform/issues?page=2")


def test_github_token_never_leaks(
    stand: Handle, logs: Captured, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    tracker = gh(stand, retry_attempts=2)
    errors: list[BaseException] = []
    tracker.create_issue("t", "b", ["gatehouse"])
    faults(stand, error_rate=1.0, statuses=[429], times=1)
    tracker.comment("1", "retried after a 429")
    for status in (401, 403, 500):
        faults(stand, error_rate=1.0, statuses=[status], times=2)
        with pytest.raises(Exception) as caught:
            tracker.create_issue("t", "b", ["gatehouse"])
        errors.append(caught.value)
    with pytest.raises(NotFoundError) as missing:
        tracker.get("404")
    errors.append(missing.value)
    closed = GitHubTracker(REPO, TOKEN, api="http://127.0.0.1:9", retry_attempts=2, sleep=Sleeps())
    with pytest.raises(TransientError) as refused:
        closed.get("1")  # connection refused: retried, then a transient error
    errors.append(refused.value)
    out = capsys.readouterr()
    texts = [repr(tracker), str(tracker), out.out, out.err, caplog.text, *logs.lines]
    texts += [f"{e!s} {e!r} {e.__cause__!r} {e.__context__!r}" for e in errors]
    assert logs.lines and any("retry" in line for line in logs.lines)  # something was logged
    assert "token='***'" in repr(tracker)
    for text in texts:
        assert TOKEN not in text


# -------------------------------------------------------------------------------------------- Jira


@dataclass
class JiraIssue:
    key: str
    fields: dict[str, Any]
    comments: list[dict[str, Any]] = field(default_factory=list)
    category: str = "new"
    status: str = "To Do"
    resolution: str | None = None
    resolved: str | None = None


class JiraFake:
    """The four Jira Cloud REST v3 calls JiraTracker makes, with basic auth and injectable 429s."""

    NAME = "jira-fake"

    def __init__(self) -> None:
        self.issues: dict[str, JiraIssue] = {}
        self.requests: list[tuple[str, str, Any]] = []
        self.fail_next: list[tuple[int, dict[str, str]]] = []
        self.lock = threading.Lock()
        self.expected = "Basic " + base64.b64encode(f"bot@shop.example:{JIRA_TOKEN}".encode()).decode()

    def close(self) -> None:
        pass

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        with self.lock:
            response = self.handle(request)
        return response(environ, start_response)

    def handle(self, request: Request) -> Response:
        body = json.loads(request.get_data() or b"null")
        self.requests.append((request.method, request.full_path.rstrip("?"), body))
        if request.headers.get("Authorization") != self.expected:
            return self.json({"errorMessages": ["Client must be authenticated"]}, 401)
        if self.fail_next:
            status, headers = self.fail_next.pop(0)
            message = "Rate limit exceeded." if status == 429 else "You do not have permission (rate limit?)."
            return self.json({"errorMessages": [message]}, status, headers)
        path = request.path
        if (request.method, path) == ("POST", "/rest/api/3/issue"):
            fields = body["fields"]
            if any(" " in label for label in fields.get("labels", [])):
                return self.json({"errors": {"labels": "Labels cannot contain spaces"}}, 400)
            if fields["description"].get("type") != "doc" or len(json.dumps(fields["description"])) > 32_767:
                return self.json({"errors": {"description": "bad description"}}, 400)
            key = f"OPS-{len(self.issues) + 1}"
            self.issues[key] = JiraIssue(key, fields)
            return self.json({"id": str(10_000 + len(self.issues)), "key": key, "self": "x"}, 201)
        if (match := re.match(r"^/rest/api/3/issue/([A-Z]+-\d+)(/comment)?$", path)) is None:
            if (request.method, path) == ("POST", "/rest/api/3/search/jql"):
                return self.search(body)
            return self.json({"errorMessages": ["no route"]}, 404)
        issue = self.issues.get(match.group(1))
        if issue is None:
            return self.json(
                {"errorMessages": ["Issue does not exist or you do not have permission to see it."]}, 404
            )
        if match.group(2) and request.method == "POST":
            issue.comments.append(body["body"])
            return self.json({"id": str(len(issue.comments))}, 201)
        assert request.args.get("fields") == "status,resolution,labels,resolutiondate"
        return self.json(
            {
                "key": issue.key,
                "fields": {
                    "status": {"name": issue.status, "statusCategory": {"key": issue.category}},
                    "resolution": {"name": issue.resolution} if issue.resolution else None,
                    "labels": issue.fields["labels"],
                    "resolutiondate": issue.resolved,
                },
            }
        )

    def search(self, body: dict[str, Any]) -> Response:
        label = re.search(r'labels = "((?:[^"\\]|\\.)*)"', body["jql"])
        assert label is not None and 'project = "OPS"' in body["jql"]
        wanted = label.group(1).replace('\\"', '"').replace("\\\\", "\\")
        matching = [i for i in self.issues.values() if wanted in i.fields["labels"]]
        start = int(body.get("nextPageToken") or 0)
        page = matching[start : start + body["maxResults"]]
        out: dict[str, Any] = {
            "issues": [{"id": "1", "key": i.key, "fields": self.fields(i, body)} for i in page]
        }
        if start + len(page) < len(matching):
            out["nextPageToken"] = str(start + len(page))
            out["isLast"] = False
        else:
            out["isLast"] = True
        return self.json(out)

    @staticmethod
    def fields(issue: JiraIssue, body: dict[str, Any]) -> dict[str, Any]:
        """The requested fields of a search hit, as Jira returns them."""
        every = {
            "summary": issue.fields.get("summary", ""),
            "labels": issue.fields["labels"],
            "status": {"name": issue.status, "statusCategory": {"key": issue.category}},
            "resolution": {"name": issue.resolution} if issue.resolution else None,
            "comment": {"total": len(issue.comments), "comments": []},
        }
        return {k: v for k, v in every.items() if k in body.get("fields", [])}

    @staticmethod
    def json(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
        return Response(json.dumps(obj), status=status, headers=headers, content_type="application/json")


@pytest.fixture
def jira() -> Iterator[tuple[JiraFake, str]]:
    fake = JiraFake()
    handle = serve(cast(Any, fake))
    yield fake, handle.url
    handle.stop()


def jt(url: str, sleeps: Sleeps | None = None, **kwargs: Any) -> JiraTracker:
    kwargs.setdefault("creates_per_minute", 100_000)
    return JiraTracker(url, "OPS", "bot@shop.example", JIRA_TOKEN, sleep=sleeps or Sleeps(), **kwargs)


def rendered_body() -> str:
    world = World()
    world.bundles.bundles["orders-v1"] = direct_bundle()
    world.publish(incident(incident_id="i-1", started_at=STARTED))
    world.run()
    return world.tracker.tickets()[0].body


def nodes(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield doc
    for child in doc.get("content", []):
        yield from nodes(child)


def test_jira_create_comment_and_adf(jira: tuple[JiraFake, str]) -> None:
    fake, url = jira
    tracker = jt(url)
    body = rendered_body()
    ref = tracker.create_issue(
        "[gatehouse] orders-v1\nslow", body, ["gatehouse", "won't fix", "gatehouse-fp-1"]
    )
    assert ref.id == "OPS-1" and ref.url == f"{url}/browse/OPS-1"
    fields = fake.issues["OPS-1"].fields
    assert fields["project"] == {"key": "OPS"} and fields["issuetype"] == {"name": "Task"}
    assert fields["summary"] == "[gatehouse] orders-v1 slow"
    assert fields["labels"] == ["gatehouse", "won't_fix", "gatehouse-fp-1"]
    doc = fields["description"]
    kinds = {n["type"] for n in nodes(doc)}
    assert kinds <= {
        "doc",
        "paragraph",
        "text",
        "hardBreak",
        "heading",
        "codeBlock",
        "bulletList",
        "listItem",
        "rule",
    }
    assert {"heading", "codeBlock", "bulletList", "paragraph"} <= kinds
    languages = [n.get("attrs", {}).get("language") for n in nodes(doc) if n["type"] == "codeBlock"]
    assert "json" in languages and "xml" in languages
    texts = [n for n in nodes(doc) if n["type"] == "text"]
    assert all(t["text"] for t in texts)  # ADF rejects empty text nodes
    marks = {m["type"] for t in texts for m in t.get("marks", [])}
    assert marks == {"strong", "code", "link"}
    assert "<LoadBalancer>" in json.dumps(doc) and "<!-- gatehouse -->" not in json.dumps(doc)
    tracker.comment("OPS-1", "Fired again:\n\n- `i-2` at 15:20")
    (comment,) = fake.issues["OPS-1"].comments
    assert comment["content"][1]["type"] == "bulletList"


def test_jira_status_and_resolution_mapping(jira: tuple[JiraFake, str]) -> None:
    fake, url = jira
    tracker = jt(url)
    for _ in range(4):
        tracker.create_issue("t", "b", ["gatehouse"])
    fake.issues["OPS-2"].category, fake.issues["OPS-2"].status = "indeterminate", "In Progress"
    for key, resolution in (("OPS-3", "Won't Do"), ("OPS-4", "Done")):
        issue = fake.issues[key]
        issue.category, issue.resolution, issue.resolved = "done", resolution, "2025-03-14T14:00:00.000+0000"
    states = {key: tracker.get(key) for key in ("OPS-1", "OPS-2", "OPS-3", "OPS-4")}
    assert [(s.state, s.closed_reason) for s in states.values()] == [
        ("open", None),
        ("open", None),
        ("closed", "not_planned"),
        ("closed", "completed"),
    ]
    assert states["OPS-3"].closed_at == T0 and states["OPS-3"].labels == ("gatehouse",)
    with pytest.raises(NotFoundError, match="Issue does not exist"):
        tracker.get("OPS-99")


def test_jira_find_by_label_pages(jira: tuple[JiraFake, str]) -> None:
    fake, url = jira
    tracker = jt(url)
    for n in range(130):
        tracker.create_issue(f"t{n}", "b", ["gatehouse-fp-x" if n % 10 else "other"])
    found = tracker.find_by_label("gatehouse-fp-x")
    assert len(found) == 117 and found[0].id == "OPS-2"
    assert sum(1 for method, path, _ in fake.requests if path == "/rest/api/3/search/jql") == 2
    assert [r.id for r in tracker.find_by_label("won't fix")] == []  # spaces become underscores
    assert jira_label("won't fix") == "won't_fix"


def test_jira_list_tickets_newest_first_with_state(jira: tuple[JiraFake, str]) -> None:
    fake, url = jira
    tracker = jt(url, Sleeps())
    first = tracker.create_issue("slow orders", "b", ["gatehouse"])
    second = tracker.create_issue("slow catalog", "b", ["gatehouse"])
    tracker.comment(second.id, "re-fired")
    fake.issues[first.id].category, fake.issues[first.id].resolution = "done", "Won't Do"
    listed = {t.id: t for t in tracker.list_tickets("gatehouse")}
    assert listed[first.id].state == "closed" and listed[first.id].closed_reason == "Won't Do"
    assert listed[second.id].state == "open" and listed[second.id].comments == 1
    assert listed[second.id].title == "slow catalog"
    search = next(b for m, p, b in fake.requests if p == "/rest/api/3/search/jql")
    assert "ORDER BY created DESC" in search["jql"]


def test_jira_429_is_retried_and_errors_are_mapped(jira: tuple[JiraFake, str], logs: Captured) -> None:
    fake, url = jira
    sleeps = Sleeps()
    tracker = jt(url, sleeps)
    fake.fail_next = [(429, {"Retry-After": "2"})]
    assert tracker.create_issue("t", "b", ["gatehouse"]).id == "OPS-1"
    assert sleeps.waits == [2.0]
    fake.fail_next = [(429, {"Retry-After": "120"})]
    with pytest.raises(TrackerRateLimitedError):
        tracker.get("OPS-1")
    wrong = JiraTracker(url, "OPS", "bot@shop.example", "wrong-token", sleep=Sleeps())
    with pytest.raises(PermanentError, match=r"Jira GET /rest/api/3/issue/OPS-1: HTTP 401 .*permissions"):
        wrong.get("OPS-1")
    fake.fail_next = [(403, {})]
    with pytest.raises(PermanentError, match="permissions"):
        tracker.comment("OPS-1", "x")
    for text in [repr(tracker), *logs.lines, *(str(r) for r in fake.requests)]:
        assert JIRA_TOKEN not in text


def test_jira_rate_limit_reset_is_an_iso_8601_time(jira: tuple[JiraFake, str]) -> None:
    """Jira's X-RateLimit-Reset is a timestamp (yyyy-MM-ddTHH:mmZ), not epoch seconds as on GitHub;
    only Retry-After is in seconds."""
    fake, url = jira
    sleeps = Sleeps()
    now = 1_741_960_800  # 2025-03-14 14:00:00 UTC
    tracker = jt(url, sleeps, clock=lambda: now, retry_max_wait=60.0)
    fake.fail_next = [(429, {"X-RateLimit-Reset": "2025-03-14T14:01Z"})]  # Jira's minute precision
    assert tracker.create_issue("t", "b", ["gatehouse"]).id == "OPS-1"
    assert sleeps.waits == [60.0]
    fake.fail_next = [(429, {"X-RateLimit-Reset": "2025-03-14T14:10Z"})]
    with pytest.raises(TrackerRateLimitedError) as caught:
        tracker.get("OPS-1")
    assert caught.value.retry_after == 600.0
    fake.fail_next = [(429, {"Retry-After": "3", "X-RateLimit-Reset": "2025-03-14T14:10Z"})]
    tracker.get("OPS-1")  # Retry-After (seconds) wins
    assert sleeps.waits[-1] == 3.0


def test_jira_gateway_base_url_needs_a_browse_url(jira: tuple[JiraFake, str]) -> None:
    """Scoped tokens call https://api.atlassian.com/ex/jira/{cloudId}; issue links must point at the
    site (https://your-site.atlassian.net/browse/KEY), which the gateway URL does not name."""
    gateway = "https://api.atlassian.com/ex/jira/11111111-2222-3333-4444-555555555555"
    with pytest.raises(InputError, match="GATEHOUSE_TICKETS_JIRA_BROWSE_URL"):
        JiraTracker(gateway, "OPS", "bot@shop.example", JIRA_TOKEN)
    with pytest.raises(InputError, match="GATEHOUSE_TICKETS_JIRA_BROWSE_URL"):
        JiraTracker(gateway, "OPS", "bot@shop.example", JIRA_TOKEN, browse_url="shop.atlassian.net")
    scoped = JiraTracker(
        gateway, "OPS", "bot@shop.example", JIRA_TOKEN, browse_url="https://shop.atlassian.net/"
    )
    assert scoped.base_url == gateway
    fake, url = jira
    tracker = jt(url, browse_url="https://shop.atlassian.net")
    ref = tracker.create_issue("t", "b", ["gatehouse"])
    assert ref.url == "https://shop.atlassian.net/browse/OPS-1"
    assert tracker.get("OPS-1").url == ref.url and tracker.find_by_label("gatehouse")[0].url == ref.url
    assert fake.requests[0][1] == "/rest/api/3/issue"  # the API still goes to the base URL
    from_settings = tracker_from_settings(
        "jira",
        token_secret="projects/p/secrets/jira",
        secrets_client_factory=lambda: FakeSecrets(JIRA_TOKEN),
        jira_url=gateway,
        jira_project="OPS",
        jira_email="bot@shop.example",
        jira_browse_url="https://shop.atlassian.net",
    )
    assert isinstance(from_settings, JiraTracker)
    assert from_settings.browse_url == "https://shop.atlassian.net"


def test_fit_adf_keeps_jira_under_its_limit() -> None:
    huge = "\n".join(f"| row {n} | {'x' * 50} |" for n in range(2_000))
    doc = fit_adf("# Title\n\n" + huge)
    assert len(json.dumps(doc, ensure_ascii=False)) <= 32_767
    assert "cut to fit" in json.dumps(doc)
    small = markdown_to_adf("plain")
    assert (
        fit_adf("plain")
        == small
        == {
            "type": "doc",
            "version": 1,
            "content": [{"type": "paragraph", "content": [{"type": "text", "text": "plain"}]}],
        }
    )


def test_markdown_to_adf_constructs() -> None:
    doc = markdown_to_adf(
        "## Head `x`\n\nline one\nline **two** [link](https://e.x/a)\n\n"
        "* a\n* b \\| c\n\n```xml\n<A/>\n```\n\n| h1 | h2 |\n|---|---:|\n| `v` | \\> 2 |\n\n---\n"
        "```\nunterminated"
    )
    content = doc["content"]
    assert [n["type"] for n in content] == [
        "heading",
        "paragraph",
        "bulletList",
        "codeBlock",
        "codeBlock",
        "rule",
        "codeBlock",
    ]
    assert content[0]["attrs"] == {"level": 2}
    assert content[1]["content"][1] == {"type": "hardBreak"}
    assert content[2]["content"][1]["content"][0]["content"] == [{"type": "text", "text": "b | c"}]
    assert content[3] == {
        "type": "codeBlock",
        "attrs": {"language": "xml"},
        "content": [{"type": "text", "text": "<A/>"}],
    }
    assert content[4]["content"][0]["text"] == "h1  h2\nv   > 2"
    assert content[6]["content"][0]["text"] == "unterminated" and "attrs" not in content[6]
    assert markdown_to_adf("")["content"] == [{"type": "paragraph", "content": []}]


# ------------------------------------------------------------------------------------------ wiring


class FakeSecrets:
    def __init__(self, value: str = TOKEN, error: Exception | None = None) -> None:
        self.names: list[str] = []
        self.value, self.error = value, error

    def access_secret_version(self, name: str) -> Any:
        self.names.append(name)
        if self.error is not None:
            raise self.error
        payload = type("Payload", (), {"data": self.value.encode() + b"\n"})()
        return type("Response", (), {"payload": payload})()


def test_tracker_from_settings_reads_the_token_from_secret_manager(stand: Handle) -> None:
    secrets = FakeSecrets()
    tracker = tracker_from_settings(
        "github",
        token_secret="projects/p/secrets/github-token",
        secrets_client_factory=lambda: secrets,
        github_repo=REPO,
        github_api=stand.url,
    )
    assert isinstance(tracker, GitHubTracker) and secrets.names == [
        "projects/p/secrets/github-token/versions/latest"
    ]
    assert tracker.create_issue("t", "b", []).id == "1"  # the stand-in saw the bearer token
    jira_secrets = FakeSecrets(JIRA_TOKEN)
    jira_tracker = tracker_from_settings(
        "jira",
        token_secret="projects/p/secrets/jira/versions/3",
        secrets_client_factory=lambda: jira_secrets,
        jira_url="https://shop.atlassian.net",
        jira_project="OPS",
        jira_email="bot@shop.example",
        retry_max_wait=5.0,
    )
    assert isinstance(jira_tracker, JiraTracker) and jira_secrets.names == [
        "projects/p/secrets/jira/versions/3"
    ]
    assert JIRA_TOKEN not in repr(jira_tracker)
    with pytest.raises(InputError):
        tracker_from_settings(
            "gitlab", token_secret="projects/p/secrets/s", secrets_client_factory=FakeSecrets
        )
    with pytest.raises(InputError):
        read_secret("github-token", FakeSecrets)
    with pytest.raises(NotFoundError):
        missing = gexc.NotFound("no such secret")  # type: ignore[no-untyped-call]
        read_secret("projects/p/secrets/s", lambda: FakeSecrets(error=missing))
    with pytest.raises(InputError, match="empty"):
        read_secret("projects/p/secrets/s", lambda: FakeSecrets(value=" "))
