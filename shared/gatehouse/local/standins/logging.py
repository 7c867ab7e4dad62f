"""Stand-in for the Cloud Logging API v2 (discovery ``logging.v2``): ``entries.list`` only.

Cloud Run turns each JSON line a process writes to stdout into a LogEntry (``severity``,
``logging.googleapis.com/labels`` and ``.../trace`` lifted out, the rest in ``jsonPayload``). Here the
entries are the stack's own log lines: every ``*.log`` file of ``--log-dir`` (functions and job
executions), read at each request, lines that are not JSON objects skipped.

The filter supports the subset of the Logging query language gatehouse uses, and refuses the rest
with INVALID_ARGUMENT as the real API refuses an unparsable filter: comparisons
``field OP "value"`` (``=``, ``!=``, ``>=``, ``<=``, ``>``, ``<``, ``:`` for "has"), ``AND``,
``OR``, ``NOT`` and parentheses; ``field`` is ``timestamp``, ``severity``, ``logName`` or a dotted
path into the entry (``jsonPayload.service``). ``orderBy`` is ``timestamp asc`` (default) or
``timestamp desc``; ``pageSize`` at most 1000 (default 50), as the discovery document says.

Run: ``python -m gatehouse.local.standins.logging --port 8607 --log-dir DIR [--project P]``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import sys
from pathlib import Path
from typing import Any

from gatehouse.local.standins.server import (
    ApiError,
    Call,
    Handle,
    StandIn,
    base_parser,
    handles,
    run_forever,
    serve,
)

_TOKEN = re.compile(r'\s*(?:(\()|(\))|("(?:[^"\\]|\\.)*")|(>=|<=|!=|=|>|<|:)|([A-Za-z_][A-Za-z0-9_./-]*))')
_SEVERITIES = ["DEFAULT", "DEBUG", "INFO", "NOTICE", "WARNING", "ERROR", "CRITICAL", "ALERT", "EMERGENCY"]
_RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z")
_LIFTED = ("severity", "time", "logging.googleapis.com/labels", "logging.googleapis.com/trace")


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        if match is None:
            raise ApiError(400, f"Invalid filter: unexpected text at position {pos}")
        pos = match.end()
        kinds = ("(", ")", "str", "op", "word")
        for kind, value in zip(kinds, match.groups(), strict=True):
            if value is not None:
                out.append((kind, value))
    return out


class _Parser:
    """filter := or; or := and (OR and)*; and := unary ((AND)? unary)*; unary := NOT unary | atom"""

    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.pos = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise ApiError(400, "Invalid filter: unexpected end")
        self.pos += 1
        return token

    def parse(self) -> Any:
        if not self.tokens:
            return ("true",)
        node = self.disjunction()
        if self.peek() is not None:
            raise ApiError(400, f"Invalid filter: unexpected {self.peek()[1]!r}")  # type: ignore[index]
        return node

    def disjunction(self) -> Any:
        node = self.conjunction()
        while self.peek() == ("word", "OR"):
            self.take()
            node = ("or", node, self.conjunction())
        return node

    def conjunction(self) -> Any:
        node = self.unary()
        while True:
            token = self.peek()
            if token is None or token in (("word", "OR"), (")", ")")):
                return node
            if token == ("word", "AND"):
                self.take()
            node = ("and", node, self.unary())

    def unary(self) -> Any:
        token = self.take()
        if token == ("word", "NOT"):
            return ("not", self.unary())
        if token[0] == "(":
            node = self.disjunction()
            if self.take()[0] != ")":
                raise ApiError(400, "Invalid filter: missing )")
            return node
        if token[0] != "word":
            raise ApiError(400, f"Invalid filter: expected a field, got {token[1]!r}")
        op = self.take()
        value = self.take()
        if op[0] != "op" or value[0] != "str":
            raise ApiError(400, f'Invalid filter: expected {token[1]} OP "value"')
        return ("cmp", token[1], op[1], json.loads(value[1]))


def _field(entry: dict[str, Any], path: str) -> Any:
    node: Any = entry
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _compare(actual: Any, op: str, wanted: str, path: str) -> bool:
    if actual is None:
        return op == "!="
    if path == "severity" and op not in (":",):
        a, w = _SEVERITIES.index(str(actual)), _SEVERITIES.index(wanted) if wanted in _SEVERITIES else -1
        if w < 0:
            raise ApiError(400, f"Invalid filter: unknown severity {wanted!r}")
        return {"=": a == w, "!=": a != w, ">=": a >= w, "<=": a <= w, ">": a > w, "<": a < w}[op]
    text = actual if isinstance(actual, str) else json.dumps(actual)
    if op == ":":
        return wanted.lower() in text.lower()
    return {
        "=": text == wanted,
        "!=": text != wanted,
        ">=": text >= wanted,
        "<=": text <= wanted,
        ">": text > wanted,
        "<": text < wanted,
    }[op]


def _matches(node: Any, entry: dict[str, Any]) -> bool:
    kind = node[0]
    if kind == "true":
        return True
    if kind == "and":
        return _matches(node[1], entry) and _matches(node[2], entry)
    if kind == "or":
        return _matches(node[1], entry) or _matches(node[2], entry)
    if kind == "not":
        return not _matches(node[1], entry)
    return _compare(_field(entry, node[1]), node[2], node[3], node[1])


class Logging(StandIn):
    API = "logging.v2"
    NAME = "logging"

    def __init__(
        self,
        *,
        log_dir: str | None = None,
        project: str = "gatehouse-local",
        state_file: str | None = None,
        check_fields: bool = False,
    ) -> None:
        self.log_dir = Path(log_dir) if log_dir else None
        self.project = project
        super().__init__(state_file=state_file, check_fields=check_fields)

    def entries(self) -> list[dict[str, Any]]:
        """Every JSON line of the log directory as a LogEntry."""
        found: list[dict[str, Any]] = []
        for path in sorted(self.log_dir.glob("*.log")) if self.log_dir else []:
            resource = (
                {"type": "cloud_run_job", "labels": {"job_name": path.stem.rsplit("-", 2)[0]}}
                if path.stem.endswith("-0")
                else {"type": "cloud_run_revision", "labels": {"service_name": path.stem}}
            )
            for number, line in enumerate(path.read_text(errors="replace").splitlines()):
                try:
                    doc = json.loads(line)
                except ValueError:
                    continue
                if not isinstance(doc, dict) or not _RFC3339.fullmatch(str(doc.get("time", ""))):
                    continue  # Cloud Run would stamp it with the receive time; these are not ours
                entry: dict[str, Any] = {
                    "logName": f"projects/{self.project}/logs/run.googleapis.com%2Fstdout",
                    "resource": resource,
                    "timestamp": doc["time"],
                    "receiveTimestamp": doc["time"],
                    "severity": doc.get("severity") if doc.get("severity") in _SEVERITIES else "DEFAULT",
                    "insertId": f"{path.stem}-{number}",
                    "jsonPayload": {k: v for k, v in doc.items() if k not in _LIFTED},
                }
                labels = doc.get("logging.googleapis.com/labels")
                if isinstance(labels, dict):
                    entry["labels"] = {str(k): str(v) for k, v in labels.items()}
                if isinstance(doc.get("logging.googleapis.com/trace"), str):
                    entry["trace"] = doc["logging.googleapis.com/trace"]
                found.append(entry)
        return found

    @handles("POST", "logging.entries.list")
    def list_entries(self, call: Call) -> dict[str, Any]:
        body = call.json()
        if not isinstance(body, dict):
            raise ApiError(400, "Invalid JSON payload received: expected a ListLogEntriesRequest object")
        names = body.get("resourceNames")
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise ApiError(400, "resourceNames is required")
        if any(
            not re.fullmatch(r"(projects|organizations|folders|billingAccounts)/[^/]+(/.*)?", n)
            for n in names
        ):
            raise ApiError(
                400, "resourceNames must be projects/P, organizations/O, folders/F or billingAccounts/B"
            )
        tree = _Parser(str(body.get("filter") or "")).parse()
        order = str(body.get("orderBy") or "timestamp asc").strip().lower()
        if order not in ("timestamp asc", "timestamp desc"):
            raise ApiError(400, f"Invalid orderBy {order!r}: only timestamp asc|desc")
        size = body.get("pageSize") or 50
        if not isinstance(size, int) or size < 0 or size > 1000:
            raise ApiError(400, "pageSize must be between 0 and 1000")
        token = str(body.get("pageToken") or "")
        try:
            offset = int(base64.urlsafe_b64decode(token.encode()).decode()) if token else 0
        except (ValueError, binascii.Error):
            raise ApiError(400, "Invalid pageToken") from None
        projects = {n.split("/")[1] for n in names if n.startswith("projects/")}
        found = [e for e in self.entries() if self.project in projects and _matches(tree, e)]
        found.sort(key=lambda e: (e["timestamp"], e["insertId"]), reverse=order.endswith("desc"))
        page = found[offset : offset + size]
        out: dict[str, Any] = {"entries": page} if page else {}
        if offset + size < len(found):
            out["nextPageToken"] = base64.urlsafe_b64encode(str(offset + size).encode()).decode()
        return out


def start(port: int = 0, **opts: Any) -> Handle:
    """Serve a :class:`Logging` stand-in in this process (``opts`` as its constructor takes)."""
    return serve(Logging(**opts), port)


def main(argv: list[str] | None = None) -> None:
    parser = base_parser("Cloud Logging API v2 stand-in (entries.list over the stack's log lines)")
    parser.add_argument("--log-dir", required=True, help="directory of the processes' JSON log lines")
    parser.add_argument("--project", default="gatehouse-local")
    args = parser.parse_args(argv)
    run_forever(
        Logging(
            log_dir=args.log_dir,
            project=args.project,
            state_file=args.state_file,
            check_fields=args.check_fields,
        ),
        args.port,
    )


if __name__ == "__main__":
    main(sys.argv[1:])
