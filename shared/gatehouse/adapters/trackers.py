"""Issue trackers for the tickets job (``gatehouse.tickets.ports.Tracker``): GitHub Issues and Jira Cloud.

Both speak REST through ``requests`` with the tracker's own token (not Google credentials), and
share one piece of plumbing, :class:`_Rest`, that exists for three reasons:

* **Rate limits.** GitHub allows 5,000 requests an hour, and its secondary limits allow only about
  80 content-creating requests a minute and 500 an hour; Jira Cloud answers 429 with
  ``Retry-After``. Creations (issues, comments) take a token from a client-side limiter (60 a
  minute by default). A rate-limited answer (429, or GitHub's 403 with ``Retry-After``,
  ``x-ratelimit-remaining: 0`` + ``x-ratelimit-reset``, or a "secondary rate limit" message) is
  timed by ``Retry-After`` (seconds), else ``X-RateLimit-Reset`` (GitHub: epoch seconds; Jira: an
  ISO 8601 time), and waited out when the wait is at most ``retry_max_wait``; a longer wait raises
  :class:`TrackerRateLimitedError` (a ``TransientError``) at once, so the job leaves those messages
  for its next run instead of sleeping through its task timeout.
* **No duplicates from retries.** Creating an issue or a comment is not idempotent: a 5xx or a
  read timeout may hide a write that happened. Those are retried only when the request surely had
  no effect (rate limited, or the connection was never made); otherwise the error goes to the
  executor, whose ledger claim and label lookup settle it on the next run.
* **No leaked token.** The token lives in the session headers (GitHub) or basic auth (Jira) only;
  ``repr`` masks it, error messages carry method, path, status and the tracker's message (with the
  token masked should a server echo it), and pagination links are followed only on the tracker's
  own host, so the credential is never sent elsewhere.

GitHub's ``find_by_label`` lists ``/issues?labels=..&state=all`` (a consistent listing) rather than
the search API, whose index lags. Jira has no listing by label, only JQL search
(``POST /rest/api/3/search/jql``), which is near-consistent: an issue created seconds ago may be
missing. That is acceptable because the ledger claim, not the lookup, prevents duplicates; the
lookup only adopts a ticket a crashed run created.

Jira descriptions and comments are Atlassian Document Format: :func:`markdown_to_adf` converts the
Markdown the renderer writes (paragraphs, headings, fenced code blocks with their language, simple
bullet lists, tables as aligned monospace, bold, inline code and links) and :func:`fit_adf` keeps
the serialized document within Jira's 32,767-character field limit.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import quote, urlsplit

import requests
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from gatehouse.adapters.http import RateLimiter
from gatehouse.errors import (
    ConflictError,
    InputError,
    NotFoundError,
    PermanentError,
    TransientError,
    is_transient,
    is_transient_status,
)
from gatehouse.logging import event, get_logger
from gatehouse.tickets.ports import TicketRef, TicketState

GITHUB_API = "https://api.github.com"
JIRA_FIELD_LIMIT = 32_767
CREATES_PER_MINUTE = 60
_log = get_logger("trackers")
_REPO = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
_ISSUE_NUMBER = re.compile(r"^[1-9][0-9]{0,9}$")
_JIRA_KEY = re.compile(r"^[A-Z][A-Z0-9_]+-[1-9][0-9]*$")
_JIRA_PROJECT = re.compile(r"^[A-Z][A-Z0-9_]{1,9}$")
_SECRET = re.compile(r"^projects/[^/]+/secrets/[^/]+(?:/versions/[^/]+)?$")
_MAX_PAGES = 100  # 10,000 tickets carrying one label is far beyond any real fingerprint
_MAX_BODY_READ = 65536  # GitHub bodies hold at most 65,536 characters
_NOT_PLANNED_RESOLUTIONS = frozenset({"won't do", "won't fix", "declined", "duplicate"})
_PERMISSIONS_HINT = "check the tracker token's permissions"


@dataclass(frozen=True)
class TicketSummary:
    """One row of ``gatehouse tickets list``."""

    id: str
    title: str
    state: str  # open | closed
    closed_reason: str | None
    url: str
    labels: tuple[str, ...]
    comments: int | None = None
    # the description where the listing carries it (GitHub): the inventory reads its evidence table
    body: str = field(default="", repr=False, compare=False)


class TrackerRateLimitedError(TransientError):
    """The tracker asked for a longer pause than ``retry_max_wait``: retry in the next run."""


class _NotAppliedError(TransientError):
    """Refused before it could take effect (rate limited, no connection): safe to repeat."""


class _Rest:
    """One tracker's HTTP plumbing: retries, rate-limit waits, error mapping, masked secrets."""

    def __init__(
        self,
        name: str,
        base: str,
        session: requests.Session,
        secret: str,
        *,
        creates_per_minute: int,
        retry_attempts: int,
        retry_max_wait: float,
        timeout: float,
        clock: Callable[[], float],
        sleep: Callable[[float], None],
        unknown_limit_wait: float | None = None,
        secondary_limits: bool = False,
        reset_format: Literal["epoch", "iso"] = "epoch",
    ) -> None:
        self.name, self.base, self.session = name, base.rstrip("/"), session
        # X-RateLimit-Reset: epoch seconds on GitHub, an ISO 8601 time on Jira
        self.reset_format = reset_format
        self.unknown_limit_wait = unknown_limit_wait  # a rate-limit answer that says nothing of when
        self.secondary_limits = secondary_limits  # GitHub: a 403 saying "rate limit" is one
        self._secret = secret
        self.creates = RateLimiter(creates_per_minute, sleep=sleep)
        self.attempts, self.max_wait, self.timeout = retry_attempts, retry_max_wait, timeout
        self.clock, self.sleep = clock, sleep

    def mask(self, text: str) -> str:
        return text.replace(self._secret, "***") if self._secret else text

    def request(
        self,
        method: str,
        target: str,
        *,
        json_body: Any = None,
        params: Mapping[str, str] | None = None,
        idempotent: bool = True,
        create: bool = False,
    ) -> requests.Response:
        """``target`` is a path under the base URL or an absolute URL on the same host (a Link)."""
        url = target if target.startswith(("http://", "https://")) else self.base + target
        if not url.startswith(self.base + "/"):
            raise PermanentError(f"{self.name}: refusing to send the token to {urlsplit(url).netloc}")
        what = f"{self.name} {method} {urlsplit(url).path}"

        def attempt() -> requests.Response:
            if create:
                self.creates.acquire()
            try:
                response = self.session.request(
                    method, url, json=json_body, params=params, timeout=self.timeout
                )
            except requests.RequestException as exc:
                text = self.mask(f"{what}: {type(exc).__name__}: {str(exc)[:300]}")
                if _never_sent(exc):
                    raise _NotAppliedError(text) from exc
                raise TransientError(text) from exc
            if response.status_code >= 400:
                raise self._error(response, what)
            return response

        def retryable(exc: BaseException) -> bool:
            if isinstance(exc, TrackerRateLimitedError) or not is_transient(exc):
                return False
            return idempotent or isinstance(exc, _NotAppliedError)

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            if isinstance(exc, TransientError) and exc.retry_after is not None:
                return min(self.max_wait, exc.retry_after)
            backoff = min(self.max_wait, 0.5 * 2.0 ** (state.attempt_number - 1))
            return backoff + random.uniform(0, 0.25)  # noqa: S311 - jitter

        def log(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            event(
                _log,
                "tracker call failed; will retry",
                level=20,
                attempt=state.attempt_number,
                error=self.mask(str(exc)),
            )

        retrying = Retrying(
            stop=stop_after_attempt(self.attempts),
            wait=wait,
            retry=retry_if_exception(retryable),
            before_sleep=log,
            sleep=self.sleep,
            reraise=True,
        )
        return retrying(attempt)

    def _error(self, response: requests.Response, what: str) -> Exception:
        status = response.status_code
        text = self.mask(f"{what}: HTTP {status} {_message(response)}".strip())
        limited, wait = self._rate_limited(response)
        if limited:
            if wait is not None and wait > self.max_wait:
                return TrackerRateLimitedError(
                    f"{text} (rate limited for {wait:.0f}s; left for the next run)",
                    status=status,
                    retry_after=wait,
                )
            return _NotAppliedError(text, status=status, retry_after=wait)
        if status in (401, 403):
            return PermanentError(f"{text} ({_PERMISSIONS_HINT})", status=status)
        if status in (404, 410):
            return NotFoundError(text, status=status)
        if status == 409:
            return ConflictError(text, status=status)
        if is_transient_status(status):
            return TransientError(
                text, status=status, retry_after=_seconds(response.headers.get("Retry-After"))
            )
        return PermanentError(text, status=status)

    def _rate_limited(self, response: requests.Response) -> tuple[bool, float | None]:
        """Is this a rate-limit answer, and how long does the tracker want us to wait?"""
        status, headers = response.status_code, response.headers
        retry_after = _seconds(headers.get("Retry-After"))
        exhausted = headers.get("x-ratelimit-remaining") == "0"
        if status not in (403, 429):
            return False, None
        secondary = self.secondary_limits and status == 403 and "rate limit" in _message(response).lower()
        if status == 403 and retry_after is None and not exhausted and not secondary:
            return False, None  # a plain permission problem
        if retry_after is not None:
            return True, retry_after
        if self.reset_format == "iso":  # Jira: a 429's reset time says when to come back
            reset = _epoch(headers.get("x-ratelimit-reset"))
            if status == 429 and reset is not None:
                return True, max(1.0, reset - self.clock())
            return True, self.unknown_limit_wait
        reset = _seconds(headers.get("x-ratelimit-reset"))
        if exhausted and reset is not None:
            return True, max(1.0, reset - self.clock())
        return True, self.unknown_limit_wait


def _never_sent(exc: requests.RequestException) -> bool:
    if isinstance(exc, requests.ConnectTimeout):
        return True
    return isinstance(exc, requests.ConnectionError) and "NewConnectionError" in repr(exc.args)


def _seconds(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


def _message(response: requests.Response) -> str:
    """The tracker's own explanation: GitHub ``message``/``errors``, Jira ``errorMessages``/``errors``."""
    try:
        body = response.json()
    except ValueError:
        return response.reason or ""
    parts: list[str] = []
    if isinstance(body, Mapping):
        if isinstance(body.get("message"), str):
            parts.append(body["message"])
        for item in body.get("errorMessages") or []:
            parts.append(str(item))
        errors = body.get("errors")
        if isinstance(errors, Mapping):
            parts += [f"{k}: {v}" for k, v in errors.items()]
        elif isinstance(errors, list):
            parts += [
                str(e.get("message") or f"{e.get('field')} {e.get('code')}")
                if isinstance(e, Mapping)
                else str(e)
                for e in errors
            ]
    return "; ".join(parts)[:500] or (response.reason or "")


def _epoch(value: object) -> float | None:
    """ISO 8601 (GitHub ``...Z``, Jira ``...+0000`` and ``yyyy-MM-ddTHH:mmZ``) -> epoch seconds.
    A time without a zone is UTC."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


def _labels(value: object) -> tuple[str, ...]:
    items = value if isinstance(value, list) else []
    names = [i.get("name") if isinstance(i, Mapping) else i for i in items]
    return tuple(str(n) for n in names if isinstance(n, str))


# ------------------------------------------------------------------------------------------ GitHub


class GitHubTracker:
    """GitHub Issues of one repository (``owner/name``)."""

    def __init__(
        self,
        repo: str,
        token: str,
        api: str = GITHUB_API,
        *,
        creates_per_minute: int = CREATES_PER_MINUTE,
        retry_attempts: int = 4,
        retry_max_wait: float = 60.0,
        timeout: float = 30.0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not _REPO.match(repo):
            raise InputError(f"GitHub repository must be owner/name, got {repo!r}")
        if not token:
            raise InputError("no GitHub token")
        self.repo, self.api = repo, api.rstrip("/")
        session = requests.Session()
        session.headers.update(
            {
                "Authorization": f"Bearer {token}",
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": "2022-11-28",
                "User-Agent": "gatehouse-tickets",
            }
        )
        self._http = _Rest(
            "GitHub",
            self.api,
            session,
            token,
            creates_per_minute=creates_per_minute,
            retry_attempts=retry_attempts,
            retry_max_wait=retry_max_wait,
            timeout=timeout,
            clock=clock,
            sleep=sleep,
            unknown_limit_wait=60.0,  # GitHub's advice for a secondary limit without headers
            secondary_limits=True,
        )
        self._issues = f"/repos/{repo}/issues"

    def __repr__(self) -> str:
        return f"GitHubTracker(repo={self.repo!r}, api={self.api!r}, token='***')"

    def create_issue(self, title: str, body: str, labels: Sequence[str]) -> TicketRef:
        wanted = list(dict.fromkeys(labels))
        doc = self._http.request(
            "POST",
            self._issues,
            json_body={"title": title[:256], "body": body, "labels": wanted},
            idempotent=False,
            create=True,
        ).json()
        # without push access GitHub creates the issue and drops the labels without a word
        got = {name.lower() for name in _labels(doc.get("labels"))}
        missing = tuple(label for label in wanted if label.lower() not in got)
        return TicketRef(str(doc["number"]), str(doc["html_url"]), missing)

    def comment(self, ticket_id: str, body: str) -> None:
        self._http.request(
            "POST",
            f"{self._issues}/{_number(ticket_id)}/comments",
            json_body={"body": body},
            idempotent=False,
            create=True,
        )

    def get(self, ticket_id: str) -> TicketState:
        doc = self._http.request("GET", f"{self._issues}/{_number(ticket_id)}").json()
        state: Literal["open", "closed"] = "closed" if doc.get("state") == "closed" else "open"
        reason = doc.get("state_reason")
        closed_reason: Literal["completed", "not_planned"] | None = None
        if state == "closed" and reason in ("not_planned", "duplicate"):
            closed_reason = "not_planned"
        elif state == "closed" and reason == "completed":
            closed_reason = "completed"
        return TicketState(
            str(doc.get("number", ticket_id)),
            str(doc.get("html_url", "")),
            state,
            closed_reason,
            _labels(doc.get("labels")),
            _epoch(doc.get("closed_at")) if state == "closed" else None,
        )

    def find_by_label(self, label: str) -> list[TicketRef]:
        if "," in label:
            raise InputError(f"a GitHub label filter cannot contain a comma: {label!r}")
        found: list[TicketRef] = []
        for page in self._pages(self._issues, {"labels": label, "state": "all", "per_page": "100"}):
            for issue in page:
                if not isinstance(issue, Mapping) or "pull_request" in issue:
                    continue  # the issues listing includes pull requests
                if label.lower() in (name.lower() for name in _labels(issue.get("labels"))):
                    found.append(TicketRef(str(issue["number"]), str(issue["html_url"])))
        return found

    def list_tickets(self, label: str) -> list[TicketSummary]:
        """Open and closed issues carrying ``label``, newest first."""
        found: list[TicketSummary] = []
        params = {"labels": label, "state": "all", "per_page": "100", "sort": "created", "direction": "desc"}
        for page in self._pages(self._issues, params):
            for issue in page:
                if not isinstance(issue, Mapping) or "pull_request" in issue:
                    continue
                found.append(
                    TicketSummary(
                        str(issue.get("number")),
                        str(issue.get("title", "")),
                        str(issue.get("state", "open")),
                        issue.get("state_reason") if issue.get("state") == "closed" else None,
                        str(issue.get("html_url", "")),
                        _labels(issue.get("labels")),
                        issue.get("comments") if isinstance(issue.get("comments"), int) else None,
                        str(issue.get("body") or "")[:_MAX_BODY_READ],
                    )
                )
        return found

    def _pages(self, path: str, params: Mapping[str, str]) -> Iterator[list[Any]]:
        target: str | None = path
        query: Mapping[str, str] | None = params
        for _ in range(_MAX_PAGES):
            if target is None:
                return
            response = self._http.request("GET", target, params=query)
            body = response.json()
            yield body if isinstance(body, list) else []
            target = response.links.get("next", {}).get("url")
            query = None  # the Link URL carries the query
        raise PermanentError(f"GitHub GET {path}: more than {_MAX_PAGES} pages")


def _number(ticket_id: str) -> str:
    if not _ISSUE_NUMBER.match(ticket_id):
        raise InputError(f"not a GitHub issue number: {ticket_id!r}")
    return ticket_id


# -------------------------------------------------------------------------------------------- Jira


class JiraTracker:
    """Jira Cloud issues of one project (REST API v3, basic auth with an API token)."""

    def __init__(
        self,
        base_url: str,
        project_key: str,
        email: str,
        token: str,
        issue_type: str = "Task",
        *,
        browse_url: str | None = None,
        creates_per_minute: int = CREATES_PER_MINUTE,
        retry_attempts: int = 4,
        retry_max_wait: float = 60.0,
        timeout: float = 30.0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not base_url.startswith(("https://", "http://")):
            raise InputError(f"Jira base URL must be http(s)://..., got {base_url!r}")
        if browse_url is not None and not browse_url.startswith(("https://", "http://")):
            raise InputError(
                f"GATEHOUSE_TICKETS_JIRA_BROWSE_URL must be the site's http(s):// URL, got {browse_url!r}"
            )
        if browse_url is None and _is_gateway(base_url):
            raise InputError(
                f"Jira base URL {base_url} is the api.atlassian.com gateway (scoped tokens), which has no "
                "issue pages: set GATEHOUSE_TICKETS_JIRA_BROWSE_URL to the site, e.g. "
                "https://your-site.atlassian.net, for ticket links"
            )
        # ticket links: the site itself, or the browse URL when the API goes through the gateway
        self.browse_url = (browse_url or base_url).rstrip("/")
        if not _JIRA_PROJECT.match(project_key):
            raise InputError(f"not a Jira project key: {project_key!r}")
        if not email or not token:
            raise InputError("Jira needs the account email and an API token")
        self.base_url, self.project_key, self.issue_type = base_url.rstrip("/"), project_key, issue_type
        self.email = email
        session = requests.Session()
        session.auth = (email, token)
        session.headers.update({"Accept": "application/json", "User-Agent": "gatehouse-tickets"})
        self._http = _Rest(
            "Jira",
            self.base_url,
            session,
            token,
            creates_per_minute=creates_per_minute,
            retry_attempts=retry_attempts,
            retry_max_wait=retry_max_wait,
            timeout=timeout,
            clock=clock,
            sleep=sleep,
            reset_format="iso",
        )

    def __repr__(self) -> str:
        return f"JiraTracker(base_url={self.base_url!r}, project_key={self.project_key!r}, token='***')"

    def _browse(self, key: str) -> str:
        return f"{self.browse_url}/browse/{key}"

    def create_issue(self, title: str, body: str, labels: Sequence[str]) -> TicketRef:
        fields = {
            "project": {"key": self.project_key},
            "summary": " ".join(title.split())[:255],  # one line, at most 255 characters
            "issuetype": {"name": self.issue_type},
            "labels": list(dict.fromkeys(jira_label(label) for label in labels)),
            "description": fit_adf(body),
        }
        doc = self._http.request(
            "POST", "/rest/api/3/issue", json_body={"fields": fields}, idempotent=False, create=True
        ).json()
        key = str(doc["key"])
        return TicketRef(key, self._browse(key))

    def comment(self, ticket_id: str, body: str) -> None:
        self._http.request(
            "POST",
            f"/rest/api/3/issue/{_key(ticket_id)}/comment",
            json_body={"body": fit_adf(body)},
            idempotent=False,
            create=True,
        )

    def get(self, ticket_id: str) -> TicketState:
        doc = self._http.request(
            "GET",
            f"/rest/api/3/issue/{_key(ticket_id)}",
            params={"fields": "status,resolution,labels,resolutiondate"},
        ).json()
        fields = doc.get("fields") or {}
        status = fields.get("status") or {}
        category = (status.get("statusCategory") or {}).get("key")
        state: Literal["open", "closed"] = "closed" if category == "done" else "open"
        resolution = (fields.get("resolution") or {}).get("name")
        closed_reason: Literal["completed", "not_planned"] | None = None
        if state == "closed":
            not_planned = isinstance(resolution, str) and resolution.lower() in _NOT_PLANNED_RESOLUTIONS
            closed_reason = "not_planned" if not_planned else "completed"
        key = str(doc.get("key", ticket_id))
        return TicketState(
            key,
            self._browse(key),
            state,
            closed_reason,
            _labels(fields.get("labels")),
            _epoch(fields.get("resolutiondate")) if state == "closed" else None,
        )

    def find_by_label(self, label: str) -> list[TicketRef]:
        return [
            TicketRef(str(i["key"]), self._browse(str(i["key"])))
            for i in self._search(label, ["labels"], "ASC")
        ]

    def list_tickets(self, label: str) -> list[TicketSummary]:
        """Issues of the project carrying ``label``, newest first."""
        found: list[TicketSummary] = []
        for issue in self._search(label, ["summary", "status", "resolution", "labels", "comment"], "DESC"):
            fields = issue.get("fields") or {}
            done = ((fields.get("status") or {}).get("statusCategory") or {}).get("key") == "done"
            resolution = (fields.get("resolution") or {}).get("name")
            comments = (fields.get("comment") or {}).get("total")
            found.append(
                TicketSummary(
                    str(issue["key"]),
                    str(fields.get("summary", "")),
                    "closed" if done else "open",
                    str(resolution) if done and resolution else None,
                    self._browse(str(issue["key"])),
                    _labels(fields.get("labels")),
                    comments if isinstance(comments, int) else None,
                )
            )
        return found

    def _search(self, label: str, fields: list[str], order: str) -> Iterator[dict[str, Any]]:
        """Issues of the project with ``label``, page by page (enhanced JQL search)."""
        escaped = jira_label(label).replace("\\", "\\\\").replace('"', '\\"')
        body: dict[str, Any] = {
            "jql": f'project = "{self.project_key}" AND labels = "{escaped}" ORDER BY created {order}',
            "fields": fields,
            "maxResults": 100,
        }
        for _ in range(_MAX_PAGES):
            doc = self._http.request("POST", "/rest/api/3/search/jql", json_body=body).json()
            yield from (i for i in doc.get("issues") or [] if isinstance(i, dict))
            token = doc.get("nextPageToken")
            if not token or doc.get("isLast") is True:
                return
            body["nextPageToken"] = token
        raise PermanentError(f"Jira search for label {label}: more than {_MAX_PAGES} pages")


def _is_gateway(url: str) -> bool:
    """``https://api.atlassian.com/ex/jira/{cloudId}``: the API gateway scoped tokens must use."""
    parts = urlsplit(url)
    return (parts.hostname or "").lower() == "api.atlassian.com" and parts.path.startswith("/ex/jira/")


def jira_label(label: str) -> str:
    """Jira labels cannot contain spaces."""
    return re.sub(r"\s+", "_", label.strip())[:255]


def _key(ticket_id: str) -> str:
    if not _JIRA_KEY.match(ticket_id):
        raise InputError(f"not a Jira issue key: {ticket_id!r}")
    return quote(ticket_id, safe="")


# ---------------------------------------------------------------------- Markdown -> Atlassian Document

_FENCE = re.compile(r"^ {0,3}(```+|~~~+)\s*([\w+#.-]*)\s*$")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_BULLET = re.compile(r"^\s{0,3}[-*+]\s+(.*)$")
_RULE = re.compile(r"^\s{0,3}(?:-{3,}|\*{3,}|_{3,})\s*$")
_TABLE_SEPARATOR = re.compile(r"^\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?$")
_HTML_ONLY = re.compile(r"^\s*(?:<!--.*?-->|</?[A-Za-z][^>]*>)+\s*$")
_SUMMARY = re.compile(r"<summary>(.*?)</summary>", re.S)
_INLINE = re.compile(
    r"`(?P<code>[^`]+)`"
    r"|\*\*(?P<bold>.+?)\*\*"
    r"|\[(?P<label>[^\]]+)\]\((?P<href>[^)\s]+)\)"
    r"|\\(?P<escaped>[\\`*_\[\]{}()<>#+\-.!|~&])"
)


def _text(text: str, marks: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    if not text:
        return []
    node: dict[str, Any] = {"type": "text", "text": text}
    if marks:
        node["marks"] = [dict(m) for m in marks]
    return [node]


def _inline(text: str, marks: Sequence[Mapping[str, Any]] = ()) -> list[dict[str, Any]]:
    nodes: list[dict[str, Any]] = []
    pos = 0
    for match in _INLINE.finditer(text):
        nodes += _text(text[pos : match.start()], marks)
        pos = match.end()
        if match.group("code") is not None:
            # ADF allows only a link mark next to code
            kept = [m for m in marks if m.get("type") == "link"]
            nodes += _text(match.group("code"), [*kept, {"type": "code"}])
        elif match.group("bold") is not None:
            nodes += _inline(match.group("bold"), [*marks, {"type": "strong"}])
        elif match.group("label") is not None:
            link = {"type": "link", "attrs": {"href": match.group("href")}}
            nodes += _inline(match.group("label"), [*marks, link])
        else:
            nodes += _text(match.group("escaped"), marks)
    nodes += _text(text[pos:], marks)
    # merge neighbours with the same marks (escapes split runs of plain text)
    merged: list[dict[str, Any]] = []
    for node in nodes:
        if merged and merged[-1].get("marks") == node.get("marks"):
            merged[-1]["text"] += node["text"]
        else:
            merged.append(node)
    return merged


def _paragraph(lines: Sequence[str]) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    for i, line in enumerate(lines):
        if i:
            content.append({"type": "hardBreak"})
        content += _inline(line.strip())
    return {"type": "paragraph", "content": content}


def _plain_cell(cell: str) -> str:
    cell = re.sub(r"\\(.)", r"\1", cell.strip())
    return cell.replace("**", "").replace("`", "")


def _table(rows: Sequence[str]) -> dict[str, Any]:
    """A Markdown table as aligned monospace text: compact (ADF tables are large) and readable."""
    cells = [
        [_plain_cell(c) for c in re.split(r"(?<!\\)\|", row.strip().strip("|"))]
        for row in rows
        if not _TABLE_SEPARATOR.match(row.strip())
    ]
    widths = [max(len(r[i]) if i < len(r) else 0 for r in cells) for i in range(max(map(len, cells)))]
    text = "\n".join("  ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip() for r in cells)
    return {"type": "codeBlock", "content": _text(text, [])}


def markdown_to_adf(markdown: str) -> dict[str, Any]:
    """Convert the renderer's Markdown to an ADF ``doc`` (unknown constructs become paragraphs)."""
    blocks: list[dict[str, Any]] = []
    lines = markdown.splitlines()
    paragraph: list[str] = []

    def flush() -> None:
        if paragraph:
            blocks.append(_paragraph(paragraph))
            paragraph.clear()

    i = 0
    while i < len(lines):
        line = lines[i]
        fence = _FENCE.match(line)
        if fence:
            flush()
            marker, code = fence.group(1), []
            i += 1
            while i < len(lines) and not lines[i].strip().startswith(marker):
                code.append(lines[i])
                i += 1
            node: dict[str, Any] = {"type": "codeBlock", "content": _text("\n".join(code), [])}
            if fence.group(2):
                node["attrs"] = {"language": fence.group(2)}
            blocks.append(node)
            i += 1  # the closing fence (or the end of a cut text)
            continue
        stripped = line.strip()
        if not stripped:
            flush()
        elif _HTML_ONLY.match(stripped):
            flush()
            summary = _SUMMARY.search(stripped)
            if summary:
                blocks.append(
                    {"type": "paragraph", "content": _text(summary.group(1).strip(), [{"type": "strong"}])}
                )
        elif _RULE.match(line):
            flush()
            blocks.append({"type": "rule"})
        elif heading := _HEADING.match(line):
            flush()
            blocks.append(
                {
                    "type": "heading",
                    "attrs": {"level": len(heading.group(1))},
                    "content": _inline(heading.group(2)),
                }
            )
        elif _BULLET.match(line):
            flush()
            items = []
            while i < len(lines) and (bullet := _BULLET.match(lines[i])):
                items.append({"type": "listItem", "content": [_paragraph([bullet.group(1)])]})
                i += 1
            blocks.append({"type": "bulletList", "content": items})
            continue
        elif stripped.startswith("|"):
            flush()
            rows = []
            while i < len(lines) and lines[i].strip().startswith("|"):
                rows.append(lines[i])
                i += 1
            blocks.append(_table(rows))
            continue
        else:
            paragraph.append(line)
        i += 1
    flush()
    return {"type": "doc", "version": 1, "content": blocks or [{"type": "paragraph", "content": []}]}


def fit_adf(markdown: str, limit: int = JIRA_FIELD_LIMIT) -> dict[str, Any]:
    """:func:`markdown_to_adf`, cut until its JSON fits Jira's field limit (with a note saying so)."""
    note = "\n\n… (cut to fit Jira's 32,767-character limit)"
    text = markdown
    for _ in range(20):
        doc = markdown_to_adf(text)
        size = len(json.dumps(doc, ensure_ascii=False))
        if size <= limit:
            return doc
        keep = int(len(text) * limit / size * 0.9) - len(note)
        text = markdown[: max(0, keep)] + note
    return markdown_to_adf(note.strip())


# --------------------------------------------------------------------------------------- wiring


def read_secret(name: str, client_factory: Callable[[], Any] | None = None) -> str:
    """The text of Secret Manager secret ``projects/P/secrets/S`` (version ``latest``) or
    ``projects/P/secrets/S/versions/V``."""
    if not _SECRET.match(name):
        raise InputError(f"secret must be projects/P/secrets/S[/versions/V], got {name!r}")
    version = name if "/versions/" in name else f"{name}/versions/latest"
    if client_factory is None:
        from google.cloud import secretmanager

        client_factory = secretmanager.SecretManagerServiceClient
    try:
        response = client_factory().access_secret_version(name=version)
    except Exception as exc:
        from gatehouse.adapters.gapic import raise_mapped

        raise_mapped(exc, f"read secret {version}")
    value = bytes(response.payload.data).decode("utf-8").strip()
    if not value:
        raise InputError(f"secret {version} is empty")
    return value


def tracker_from_settings(
    kind: str,
    *,
    token_secret: str,
    secrets_client_factory: Callable[[], Any] | None = None,
    github_repo: str = "",
    github_api: str = GITHUB_API,
    jira_url: str = "",
    jira_project: str = "",
    jira_email: str = "",
    jira_issue_type: str = "Task",
    jira_browse_url: str | None = None,
    **options: Any,
) -> GitHubTracker | JiraTracker:
    """A ``github`` or ``jira`` tracker whose token is read from Secret Manager ``token_secret``.
    ``options`` go to the tracker (``creates_per_minute``, ``retry_max_wait``, ...)."""
    if kind not in ("github", "jira"):
        raise InputError(f"tracker kind must be github or jira, got {kind!r}")
    token = read_secret(token_secret, secrets_client_factory)
    if kind == "github":
        return GitHubTracker(github_repo, token, github_api, **options)
    return JiraTracker(
        jira_url,
        jira_project,
        jira_email,
        token,
        jira_issue_type,
        browse_url=jira_browse_url or None,
        **options,
    )
