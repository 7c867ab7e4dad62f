"""Pure: what gatehouse did to one resource, from its own structured log entries.

Every line gatehouse writes is a JSON object that Cloud Run turns into a LogEntry's
``jsonPayload`` (gatehouse.logging): ``component`` (which entry point), ``correlation_id`` (one per
event, sweep or run), and the resource it acted on: ``service`` (projects/P/locations/R/services/S),
``proxy``, or ``secret_name`` (projects/NUMBER/secrets/S). :func:`query` builds the Cloud Logging
filter for a resource, :func:`timeline` groups the entries that come back into one row per
correlation id.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from gatehouse.errors import InputError

TRIGGERS = {
    "on_run_event": "audit entry",
    "on_command": "command",
    "sweep": "sweep",
    "reconcile-job": "sweep",
    "rotation": "schedule",
    "rotate-credentials": "schedule",
    "latency-tickets": "schedule",
}
# results a line can report, worst first: the row's outcome is the worst one seen
_RESULTS = (
    "error",
    "failed",
    "conflict",
    "refused",
    "registered",
    "unregistered",
    "rotated",
    "done",
    "unchanged",
)
_SINCE = re.compile(r"([1-9][0-9]{0,4})([mhdw])")
_UNITS = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}
_PROXY = re.compile(r"[A-Za-z0-9_-]{1,255}")
_SECRET_ID = re.compile(r"[A-Za-z0-9_-]{1,255}")
MAX_ENTRIES = 5000


def parse_since(text: str) -> timedelta:
    """``30d``, ``12h``, ``90m``, ``2w``; InputError otherwise."""
    match = _SINCE.fullmatch(text.strip())
    if match is None:
        raise InputError(f"--since {text!r}: expected a number and a unit, like 30d, 12h, 90m or 2w")
    return int(match.group(1)) * _UNITS[match.group(2)]


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True)
class Resource:
    """What to look for: the ``jsonPayload`` fields and values that name the resource."""

    text: str
    matches: tuple[tuple[str, str], ...]


def resource(
    text: str,
    *,
    projects: Sequence[str],
    regions: Sequence[str],
    project_numbers: Mapping[str, str],
    proxy_of: Any = None,
) -> Resource:
    """SERVICE (projects/P/locations/R/services/S), SECRET (projects/P/secrets/S), or a bare name that
    may be a proxy, a service of the one configured project and region, or a secret there.
    ``proxy_of(project, region, service)`` gives a service's proxy name."""
    text = text.strip()
    parts = text.split("/")
    if len(parts) == 6 and parts[0] == "projects" and parts[2] == "locations" and parts[4] == "services":
        found = [("service", text)]
        if proxy_of is not None:
            found.append(("proxy", proxy_of(parts[1], parts[3], parts[5])))
        return Resource(text, tuple(found))
    if (
        len(parts) == 4
        and parts[0] == "projects"
        and parts[2] == "secrets"
        and _SECRET_ID.fullmatch(parts[3])
    ):
        names = {f"projects/{parts[1]}/secrets/{parts[3]}"}
        names.add(f"projects/{project_numbers.get(parts[1], parts[1])}/secrets/{parts[3]}")
        return Resource(text, tuple(("secret_name", n) for n in sorted(names)))
    if len(parts) == 1 and _PROXY.fullmatch(text):
        found = [("proxy", text)]
        if len(projects) == 1 and len(regions) == 1:
            key = f"projects/{projects[0]}/locations/{regions[0]}/services/{text}"
            found.append(("service", key))
            if proxy_of is not None:
                found.append(("proxy", proxy_of(projects[0], regions[0], text)))
        for project in projects:
            number = project_numbers.get(project, project)
            found.append(("secret_name", f"projects/{number}/secrets/{text}"))
        return Resource(text, tuple(dict.fromkeys(found)))
    raise InputError(
        f"{text!r}: expected projects/P/locations/R/services/S, projects/P/secrets/S, or a proxy, "
        "service or secret name"
    )


def query(target: Resource, *, since: datetime) -> str:
    """The Cloud Logging filter: gatehouse's lines that name ``target``, since ``since``."""
    names = " OR ".join(f"jsonPayload.{k}={_quote(v)}" for k, v in target.matches)
    stamp = since.isoformat(timespec="seconds").replace("+00:00", "Z")
    return f'timestamp>={_quote(stamp)} AND jsonPayload.logger:"gatehouse" AND ({names})'


@dataclass
class Row:
    """What one event, sweep, command or run did to the resource."""

    time: str
    trigger: str
    correlation_id: str
    actions: list[str] = field(default_factory=list)
    outcome: str = ""
    severity: str = "INFO"


def _text(value: object, limit: int = 300) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _action(payload: Mapping[str, Any]) -> list[str]:
    found = []
    actions = payload.get("actions")
    if isinstance(actions, list) and actions:
        found += [_text(a) for a in actions[:10]]
    step = payload.get("step")
    if isinstance(step, str):
        found.append(_text(f"{step}: {payload.get('result', '')}".rstrip(": ")))
    message = payload.get("message")
    if not found and isinstance(message, str):
        extra = payload.get("reason") or payload.get("error") or ""
        found.append(_text(f"{message} ({extra})" if extra else message))
    return found


def timeline(entries: Iterable[Mapping[str, Any]]) -> list[Row]:
    """Entries (``{"timestamp", "severity", "payload"}``) grouped by correlation id, oldest first;
    each row keeps its first time, its trigger, its distinct actions and its worst result."""
    rows: dict[str, Row] = {}
    for entry in sorted(entries, key=lambda e: str(e.get("timestamp", ""))):
        payload = entry.get("payload")
        if not isinstance(payload, Mapping):
            continue
        cid = str(payload.get("correlation_id") or payload.get("execution") or entry.get("timestamp", ""))
        row = rows.get(cid)
        if row is None:
            component = str(payload.get("component", ""))
            row = rows[cid] = Row(
                time=str(entry.get("timestamp", "")),
                trigger=TRIGGERS.get(component, component or "unknown"),
                correlation_id=_text(cid, 80),
            )
        for action in _action(payload):
            if action not in row.actions:
                row.actions.append(action)
        result = payload.get("result")
        if (
            isinstance(result, str)
            and result in _RESULTS
            and (not row.outcome or _RESULTS.index(result) < _RESULTS.index(row.outcome))
        ):
            row.outcome = result
        severity = str(entry.get("severity", "INFO"))
        if severity in ("ERROR", "CRITICAL", "ALERT", "EMERGENCY"):
            row.severity = severity
    for row in rows.values():
        if not row.outcome:
            row.outcome = "error" if row.severity != "INFO" else "-"
        del row.actions[20:]
    return sorted(rows.values(), key=lambda r: r.time)
