"""Stand-in for the subset of the GitHub Issues REST API the tickets job uses.

GitHub has no emulator, and the job's guarantees depend on details a mock would gloss over: label
listings that page with ``Link`` headers and include pull requests, ``state_reason`` on closed
issues, rate-limit answers. This stand-in serves those routes with GitHub's JSON shapes, so the
production ``GitHubTracker`` is tested over real HTTP and a human can close a ticket as
"not planned" on the local stack (``PATCH``) to watch the job suppress it.

Run: ``python -m gatehouse.local.standins.github --port 8603 [--state-file F]``; in-process:
``start(port=0, state_file=None)`` returns a handle with ``.url`` and ``.stop()``. Point the
tracker at it with ``GitHubTracker("owner/repo", "any-token", api=handle.url)``.

Routes (any ``owner/repo`` exists; issue numbers start at 1 per repository; labels are created on
first use; every call needs ``Authorization: Bearer <non-empty token>``, else 401):

- ``POST /repos/{o}/{r}/issues`` ``{title, body, labels}`` -> 201
- ``GET /repos/{o}/{r}/issues?labels=a,b&state=open|closed|all&per_page=..&page=..&direction=..``
  (newest first by default, ``Link`` header with ``next``/``last``/``first``/``prev``; pull requests
  are listed too, with a ``pull_request`` key, as on GitHub)
- ``GET|PATCH /repos/{o}/{r}/issues/{n}`` (``state``, ``state_reason``, ``labels``, ``title``, ``body``)
- ``GET|POST /repos/{o}/{r}/issues/{n}/comments``

Test hooks, as on the Google stand-ins (never counted, never faulted): ``GET /_standin/health``,
``GET /_standin/stats`` (calls per route), ``POST /_standin/stats/reset``, ``POST|DELETE
/_standin/faults`` ``{"latency_ms", "error_rate", "statuses", "routes", "seed", "times"}`` (``times``:
fail at most that many calls, then the fault is spent; an injected 429 carries ``Retry-After: 1``,
a 403 is an exhausted primary limit with ``x-ratelimit-remaining: 0`` and a reset one second
ahead), ``GET /_standin/state``, ``POST /_standin/github/pulls`` ``{"repo": "o/r", "title",
"labels"}`` to add a pull request (to check that listings skip them), and ``POST
/_standin/github/tokens`` ``{"token", "push": false}`` to make a token one without push access:
as on GitHub, the labels it sets on new issues (and in updates) are dropped silently.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, cast
from urllib.parse import urlencode

from werkzeug.wrappers import Request, Response

from gatehouse.local.standins.server import Faults, Handle, run_forever, serve

DOCS = "https://docs.github.com/rest/issues/issues"
# (route as GitHub's docs write it, pattern, handler per HTTP method)
ROUTES: list[tuple[str, re.Pattern[str], dict[str, str]]] = [
    (
        "/repos/{owner}/{repo}/issues",
        re.compile(r"^/repos/([^/]+)/([^/]+)/issues$"),
        {"GET": "list_issues", "POST": "create_issue"},
    ),
    (
        "/repos/{owner}/{repo}/issues/{issue_number}",
        re.compile(r"^/repos/([^/]+)/([^/]+)/issues/(\d+)$"),
        {"GET": "get_issue", "PATCH": "update_issue"},
    ),
    (
        "/repos/{owner}/{repo}/issues/{issue_number}/comments",
        re.compile(r"^/repos/([^/]+)/([^/]+)/issues/(\d+)/comments$"),
        {"GET": "list_comments", "POST": "create_comment"},
    ),
]
CLOSED_REASONS = ("completed", "not_planned", "duplicate")
MAX_TITLE, MAX_BODY, MAX_LABEL = 256, 65_536, 50


class GitHubError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None, **extra: Any):
        super().__init__(message)
        self.status, self.message, self.headers, self.extra = status, message, headers or {}, extra


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _json(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(obj, indent=2) + "\n",
        status=status,
        headers=headers,
        content_type="application/json; charset=utf-8",
    )


def _error(exc: GitHubError) -> Response:
    return _json({"message": exc.message, "documentation_url": DOCS, **exc.extra}, exc.status, exc.headers)


def _invalid(field: str, message: str) -> GitHubError:
    return GitHubError(
        422,
        "Validation Failed",
        errors=[{"resource": "Issue", "field": field, "code": "invalid", "message": message}],
    )


@dataclass
class Call:
    """One matched API request: the base URL links are built on, the path parts and the JSON body."""

    base: str
    request: Request
    owner: str
    name: str
    number: str = ""
    body: Any = None


class GitHub:
    """The stand-in's state and WSGI app. One lock guards state, stats and faults."""

    NAME: ClassVar[str] = "github"
    API: ClassVar[str] = "GitHub REST API (issues subset)"

    def __init__(self, *, state_file: str | None = None) -> None:
        self.lock = threading.RLock()
        self.state_file = Path(state_file) if state_file else None
        self.calls: Counter[str] = Counter()
        self.faults = Faults()
        self.state: dict[str, Any] = {"next_id": 1, "next_comment_id": 1, "repos": {}, "tokens": {}}
        if self.state_file and self.state_file.exists():
            self.state.update(json.loads(self.state_file.read_text(encoding="utf-8")))

    # -- state ----------------------------------------------------------------------------------

    def changed(self) -> None:
        if not self.state_file:
            return
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.state_file.parent, prefix=self.state_file.name, suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(self.state, out)
        os.replace(tmp, self.state_file)

    def close(self) -> None:
        """Nothing to flush: every change is written when it happens."""

    def _repo(self, owner: str, repo: str) -> dict[str, Any]:
        return cast(
            dict[str, Any],
            self.state["repos"].setdefault(
                f"{owner}/{repo}", {"next_number": 1, "issues": {}, "labels": {}, "comments": {}}
            ),
        )

    def _issue(self, repo: dict[str, Any], number: str) -> dict[str, Any]:
        issue = repo["issues"].get(number)
        if issue is None:
            raise GitHubError(404, "Not Found")
        return cast(dict[str, Any], issue)

    def _labels(self, repo: dict[str, Any], names: object) -> list[str]:
        if not isinstance(names, list) or not all(isinstance(n, str | dict) for n in names):
            raise _invalid("labels", "labels must be a list of names")
        out: list[str] = []
        for item in names:
            name = item.get("name") if isinstance(item, dict) else item
            if not isinstance(name, str) or not name.strip() or len(name) > MAX_LABEL:
                raise _invalid("labels", f"label names are 1-{MAX_LABEL} characters")
            known = {k.lower(): k for k in repo["labels"]}
            if name.lower() not in known:
                repo["labels"][name] = {"id": len(repo["labels"]) + 1, "name": name, "color": "ededed"}
                known[name.lower()] = name
            if known[name.lower()] not in out:
                out.append(known[name.lower()])
        return out

    def add_issue(
        self, owner: str, name: str, title: object, body: object, labels: object, *, pull: bool = False
    ) -> dict[str, Any]:
        if not isinstance(title, str) or not title.strip():
            raise _invalid("title", "title is required")
        if len(title) > MAX_TITLE:
            raise _invalid("title", f"title is too long (maximum is {MAX_TITLE} characters)")
        if body is not None and not isinstance(body, str):
            raise _invalid("body", "body must be a string")
        if isinstance(body, str) and len(body) > MAX_BODY:
            raise _invalid("body", f"body is too long (maximum is {MAX_BODY} characters)")
        repo = self._repo(owner, name)
        stamp = _now()
        issue = {
            "id": self.state["next_id"],
            "number": repo["next_number"],
            "title": title,
            "body": body,
            "state": "open",
            "state_reason": None,
            "labels": self._labels(repo, labels if labels is not None else []),
            "created_at": stamp,
            "updated_at": stamp,
            "closed_at": None,
            "pull": pull,
        }
        self.state["next_id"] += 1
        repo["next_number"] += 1
        repo["issues"][str(issue["number"])] = issue
        self.changed()
        return issue

    # -- renderings -----------------------------------------------------------------------------

    def _render(self, base: str, owner: str, name: str, issue: dict[str, Any]) -> dict[str, Any]:
        repo = self._repo(owner, name)
        number = issue["number"]
        api = f"{base}/repos/{owner}/{name}/issues/{number}"
        out = {
            "id": issue["id"],
            "node_id": f"I_standin{issue['id']}",
            "url": api,
            "repository_url": f"{base}/repos/{owner}/{name}",
            "labels_url": f"{api}/labels{{/name}}",
            "comments_url": f"{api}/comments",
            "html_url": f"{base}/{owner}/{name}/{'pull' if issue['pull'] else 'issues'}/{number}",
            "number": number,
            "title": issue["title"],
            "body": issue["body"],
            "state": issue["state"],
            "state_reason": issue["state_reason"],
            "labels": [
                {**repo["labels"][label], "default": False, "description": None} for label in issue["labels"]
            ],
            "user": {"login": "standin-bot", "id": 1, "type": "User"},
            "assignees": [],
            "locked": False,
            "comments": len(repo["comments"].get(str(number), [])),
            "created_at": issue["created_at"],
            "updated_at": issue["updated_at"],
            "closed_at": issue["closed_at"],
            "author_association": "OWNER",
        }
        if issue["pull"]:
            out["pull_request"] = {"url": f"{base}/repos/{owner}/{name}/pulls/{number}"}
        return out

    # -- WSGI -----------------------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        try:
            response = self.dispatch(request)
        except GitHubError as exc:
            response = _error(exc)
        return response(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        if request.path.startswith("/_standin/"):
            return self._internal(request)
        template, match, handlers = "(no route)", None, {}
        for candidate, pattern, names in ROUTES:
            match = pattern.match(request.path)
            if match:
                template, handlers = candidate, names
                break
        key = f"{request.method} {template}"
        with self.lock:
            self.calls[key] += 1
            delay, injected = self._fault(key, request.path)
        if delay:
            time.sleep(delay)
        if injected is not None:
            raise injected
        self._auth(request)
        if match is None or request.method not in handlers:
            raise GitHubError(404, "Not Found")
        handler = getattr(self, handlers[request.method])
        body: Any = None
        if request.method in ("POST", "PATCH"):
            try:
                body = json.loads(request.get_data() or b"{}")
            except ValueError:
                raise GitHubError(400, "Problems parsing JSON") from None
            if not isinstance(body, dict):
                raise GitHubError(400, "Problems parsing JSON")
        base = request.host_url.rstrip("/")
        with self.lock:
            owner, name, *number = match.groups()
            return cast(Response, handler(Call(base, request, owner, name, "".join(number), body)))

    @staticmethod
    def _auth(request: Request) -> None:
        header = request.headers.get("Authorization", "")
        if not header:
            raise GitHubError(401, "Requires authentication")
        scheme, _, token = header.partition(" ")
        if scheme.lower() not in ("bearer", "token") or not token.strip():
            raise GitHubError(401, "Bad credentials")

    # -- handlers: (base URL, request, *path groups, JSON body) ---------------------------------

    def list_issues(self, call: Call) -> Response:
        base, request, owner, name = call.base, call.request, call.owner, call.name
        args = request.args
        state = args.get("state", "open")
        if state not in ("open", "closed", "all"):
            raise _invalid("state", "state must be open, closed or all")
        try:
            per_page = min(100, max(1, int(args.get("per_page", "30"))))
            page = max(1, int(args.get("page", "1")))
        except ValueError:
            raise _invalid("per_page", "per_page and page must be integers") from None
        wanted = [w.strip().lower() for w in args.get("labels", "").split(",") if w.strip()]
        repo = self._repo(owner, name)
        issues = [
            i
            for i in repo["issues"].values()
            if (state == "all" or i["state"] == state)
            and all(w in {label.lower() for label in i["labels"]} for w in wanted)
        ]
        field = "updated_at" if args.get("sort") == "updated" else "created_at"
        issues.sort(key=lambda i: (i[field], i["number"]), reverse=args.get("direction", "desc") != "asc")
        last = max(1, -(-len(issues) // per_page))
        chunk = issues[(page - 1) * per_page : page * per_page]
        links = []

        def link(to: int, rel: str) -> str:
            query = {**{k: v for k, v in args.items() if k != "page"}, "page": str(to)}
            return f'<{base}{request.path}?{urlencode(query)}>; rel="{rel}"'

        if page < last:
            links += [link(page + 1, "next"), link(last, "last")]
        if page > 1:
            links += [link(1, "first"), link(page - 1, "prev")]
        headers = {"Link": ", ".join(links)} if links else None
        return _json([self._render(base, owner, name, i) for i in chunk], 200, headers)

    def _can_push(self, request: Request) -> bool:
        """Tokens are full-access unless registered otherwise (``POST /_standin/github/tokens``)."""
        token = request.headers.get("Authorization", "").partition(" ")[2].strip()
        grant = self.state.get("tokens", {}).get(token)
        return not isinstance(grant, dict) or grant.get("push") is not False

    def create_issue(self, call: Call) -> Response:
        body = call.body
        # "Only users with push access can set labels for new issues. Labels are silently dropped
        # otherwise." (GitHub REST docs, Create an issue)
        labels = body.get("labels") if self._can_push(call.request) else None
        issue = self.add_issue(call.owner, call.name, body.get("title"), body.get("body"), labels)
        out = self._render(call.base, call.owner, call.name, issue)
        return _json(out, 201, {"Location": out["url"]})

    def get_issue(self, call: Call) -> Response:
        issue = self._issue(self._repo(call.owner, call.name), call.number)
        return _json(self._render(call.base, call.owner, call.name, issue))

    def update_issue(self, call: Call) -> Response:
        base, owner, name, number, body = call.base, call.owner, call.name, call.number, call.body
        repo = self._repo(owner, name)
        issue = self._issue(repo, number)
        state, reason = body.get("state", issue["state"]), body.get("state_reason", issue["state_reason"])
        if state not in ("open", "closed"):
            raise _invalid("state", "state must be open or closed")
        if state == "closed":
            if "state_reason" in body:
                reason = body["state_reason"] or "completed"
            elif issue["state"] != "closed":
                reason = "completed"
            if reason not in CLOSED_REASONS:
                raise _invalid("state_reason", f"a closed issue's state_reason is one of {CLOSED_REASONS}")
            if issue["state"] == "open":
                issue["closed_at"] = _now()
        else:
            if reason not in (None, "reopened") and "state_reason" in body:
                raise _invalid("state_reason", "an open issue's state_reason can only be reopened")
            reason = "reopened" if issue["state"] == "closed" else issue["state_reason"]
            issue["closed_at"] = None
        if "title" in body:
            if not isinstance(body["title"], str) or not body["title"].strip():
                raise _invalid("title", "title is required")
            issue["title"] = body["title"][:MAX_TITLE]
        if "body" in body:
            issue["body"] = body["body"]
        if "labels" in body and self._can_push(call.request):  # silently ignored without push access
            issue["labels"] = self._labels(repo, body["labels"])
        issue["state"], issue["state_reason"], issue["updated_at"] = state, reason, _now()
        self.changed()
        return _json(self._render(base, owner, name, issue))

    def _comments(self, base: str, owner: str, name: str, number: str) -> list[dict[str, Any]]:
        repo = self._repo(owner, name)
        self._issue(repo, number)
        return [
            {
                **c,
                "html_url": f"{base}/{owner}/{name}/issues/{number}#issuecomment-{c['id']}",
                "issue_url": f"{base}/repos/{owner}/{name}/issues/{number}",
                "url": f"{base}/repos/{owner}/{name}/issues/comments/{c['id']}",
                "user": {"login": "standin-bot", "id": 1, "type": "User"},
            }
            for c in repo["comments"].get(number, [])
        ]

    def list_comments(self, call: Call) -> Response:
        base, request = call.base, call.request
        comments = self._comments(base, call.owner, call.name, call.number)
        try:
            per_page = min(100, max(1, int(request.args.get("per_page", "30"))))
            page = max(1, int(request.args.get("page", "1")))
        except ValueError:
            raise _invalid("per_page", "per_page and page must be integers") from None
        last = max(1, -(-len(comments) // per_page))
        headers = None
        if page < last:
            query = {**dict(request.args.items()), "page": str(page + 1)}
            headers = {"Link": f'<{base}{request.path}?{urlencode(query)}>; rel="next"'}
        return _json(comments[(page - 1) * per_page : page * per_page], 200, headers)

    def create_comment(self, call: Call) -> Response:
        base, owner, name, number, body = call.base, call.owner, call.name, call.number, call.body
        repo = self._repo(owner, name)
        issue = self._issue(repo, number)
        text = body.get("body")
        if not isinstance(text, str) or not text.strip():
            raise GitHubError(
                422,
                "Validation Failed",
                errors=[{"resource": "IssueComment", "field": "body", "code": "missing_field"}],
            )
        if len(text) > MAX_BODY:
            raise _invalid("body", f"body is too long (maximum is {MAX_BODY} characters)")
        stamp = _now()
        comment = {
            "id": self.state["next_comment_id"],
            "body": text,
            "created_at": stamp,
            "updated_at": stamp,
        }
        self.state["next_comment_id"] += 1
        repo["comments"].setdefault(number, []).append(comment)
        issue["updated_at"] = stamp
        self.changed()
        (out,) = [c for c in self._comments(base, owner, name, number) if c["id"] == comment["id"]]
        return _json(out, 201, {"Location": out["url"]})

    # -- faults ---------------------------------------------------------------------------------

    def _fault(self, key: str, path: str) -> tuple[float, GitHubError | None]:
        delay, code = self.faults.pick(key, path)
        if code is None:
            return delay, None
        if code == 429:
            return delay, GitHubError(
                429, "API rate limit exceeded (injected by stand-in).", {"Retry-After": "1"}
            )
        if code == 403:
            reset = str(int(time.time()) + 1)
            headers = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": reset, "x-ratelimit-limit": "5000"}
            return delay, GitHubError(
                403, "API rate limit exceeded for user (injected by stand-in).", headers
            )
        return delay, GitHubError(code, "Injected error (stand-in).")

    # -- /_standin/ -------------------------------------------------------------------------------

    def _internal(self, request: Request) -> Response:
        route = (request.method, request.path.rstrip("/"))
        if route == ("GET", "/_standin/health"):
            return _json({"status": "ok", "api": self.API})
        if route == ("GET", "/_standin/stats"):
            with self.lock:
                return _json({"calls": dict(self.calls), "total": sum(self.calls.values())})
        if route == ("POST", "/_standin/stats/reset"):
            with self.lock:
                self.calls.clear()
            return _json({})
        if route == ("POST", "/_standin/faults"):
            spec = request.get_json(silent=True)
            if not isinstance(spec, dict):
                raise GitHubError(400, "body must be a JSON object")
            with self.lock:
                try:
                    return _json(self.faults.configure(spec))
                except ValueError as exc:
                    raise GitHubError(400, str(exc)) from None
        if route == ("DELETE", "/_standin/faults"):
            with self.lock:
                self.faults.clear()
            return _json({})
        if route == ("GET", "/_standin/state"):
            with self.lock:
                return _json(self.state)
        if route == ("POST", "/_standin/github/tokens"):
            spec = request.get_json(silent=True)
            token = spec.get("token") if isinstance(spec, dict) else None
            if not isinstance(spec, dict) or not isinstance(token, str) or not token.strip():
                raise GitHubError(400, 'body must be {"token": "...", "push": true|false}')
            with self.lock:
                self.state.setdefault("tokens", {})[token] = {"push": spec.get("push", True) is not False}
                self.changed()
                return _json(self.state["tokens"][token])
        if route == ("POST", "/_standin/github/pulls"):
            spec = request.get_json(silent=True)
            repo = spec.get("repo", "") if isinstance(spec, dict) else ""
            if not isinstance(spec, dict) or not re.match(r"^[^/]+/[^/]+$", str(repo)):
                raise GitHubError(400, 'body must be {"repo": "owner/name", "title": ..., "labels": [...]}')
            owner, name = str(repo).split("/")
            with self.lock:
                pull = self.add_issue(owner, name, spec.get("title"), None, spec.get("labels"), pull=True)
                return _json(self._render(request.host_url.rstrip("/"), owner, name, pull), 201)
        raise GitHubError(404, f"{request.method} {request.path}: no such stand-in route")


def start(port: int = 0, state_file: str | None = None) -> Handle:
    """Serve a :class:`GitHub` stand-in in this process on 127.0.0.1 (``port`` 0: any free port)."""
    return serve(cast(Any, GitHub(state_file=state_file)), port)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="GitHub Issues REST API stand-in")
    parser.add_argument("--port", type=int, required=True, help="TCP port on 127.0.0.1")
    parser.add_argument("--state-file", help="JSON file the state is loaded from and saved to")
    args = parser.parse_args(argv)
    run_forever(cast(Any, GitHub(state_file=args.state_file)), args.port)


if __name__ == "__main__":
    main(sys.argv[1:])
