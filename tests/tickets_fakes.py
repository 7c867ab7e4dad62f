"""In-memory stand-ins for the tickets ports, with the semantics the real services have.

* ``FakeLedger``: create-if-absent, version-guarded updates (like Firestore ``update_time``
  preconditions) and a transactional hour counter, all under one lock, so two threads racing on
  the same key get exactly one winner.
* ``FakeTracker``: issues with labels, comments, open/closed state and a close reason; counts calls
  and can be told to fail (before or after the issue is stored) to simulate crashes and timeouts.
* ``FakeSubscription``: pull leases messages until acked or redelivered.
* ``FakeStats`` / ``FakeBundles``: canned responses per proxy; count calls.

Plus builders for incident notifications, stats responses and bundle zips.
"""

from __future__ import annotations

import copy
import io
import json
import threading
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gatehouse.errors import NotFoundError, TransientError
from gatehouse.local.samples import scenario as scenario_minutes  # noqa: F401 - re-exported: one definition
from gatehouse.tickets.ports import PulledMessage, Record, StaleWriteError, TicketRef, TicketState

PROJECT = "shop-prod-417"
T0 = 1_741_960_800  # 2025-03-14 14:00:00 UTC


class Crash(BaseException):
    """Raised by a fake to simulate the job process dying mid-call (nothing catches BaseException)."""


class FakeLedger:
    def __init__(self) -> None:
        self.docs: dict[str, tuple[dict[str, Any], int]] = {}
        self.lock = threading.Lock()
        self.writes = 0
        self._clock = 0
        self.fail_update_when: Callable[[str, Mapping[str, Any]], bool] | None = None
        self.before_create: Callable[[], None] | None = None
        self.unavailable = False

    def _next(self) -> int:
        self._clock += 1
        return self._clock

    def get(self, key: str) -> Record | None:
        if self.unavailable:
            raise TransientError("firestore unavailable")
        with self.lock:
            found = self.docs.get(key)
            return None if found is None else Record(copy.deepcopy(found[0]), str(found[1]))

    def create_if_absent(self, key: str, doc: Mapping[str, Any]) -> bool:
        if self.before_create is not None:
            self.before_create()
        with self.lock:
            if key in self.docs:
                return False
            self.docs[key] = (copy.deepcopy(dict(doc)), self._next())
            self.writes += 1
            return True

    def update(self, key: str, changes: Mapping[str, Any], precondition: str) -> str:
        if self.fail_update_when is not None and self.fail_update_when(key, changes):
            raise TransientError("injected ledger failure")
        with self.lock:
            found = self.docs.get(key)
            if found is None or str(found[1]) != precondition:
                raise StaleWriteError(f"{key} changed since version {precondition}")
            doc = {**found[0], **copy.deepcopy(dict(changes))}
            version = self._next()
            self.docs[key] = (doc, version)
            self.writes += 1
            return str(version)

    def increment_hour_bucket(self, bucket: str, cap: int) -> bool:
        key = f"bucket-{bucket}"
        with self.lock:
            doc, _ = self.docs.get(key, ({"count": 0}, 0))
            if doc["count"] >= cap:
                return False
            self.docs[key] = ({"count": doc["count"] + 1}, self._next())
            self.writes += 1
            return True

    def doc(self, key: str) -> dict[str, Any]:
        return self.docs[key][0]

    def fingerprints(self) -> list[dict[str, Any]]:
        return [doc for doc, _ in self.docs.values() if doc.get("kind") == "fingerprint"]


@dataclass
class FakeIssue:
    id: str
    title: str
    body: str
    labels: list[str]
    comments: list[str] = field(default_factory=list)
    state: str = "open"
    closed_reason: str | None = None
    closed_at: float | None = None

    @property
    def url(self) -> str:
        return f"https://github.com/shop/platform/issues/{self.id}"


class FakeTracker:
    def __init__(self) -> None:
        self.issues: dict[str, FakeIssue] = {}
        self.lock = threading.Lock()
        self.calls: dict[str, int] = {"create_issue": 0, "comment": 0, "get": 0, "find_by_label": 0}
        # "before": fails, nothing stored; "after": stored, then the call fails (a timeout);
        # "crash" / "crash-after": the process dies before / after the issue is stored
        self.fail_create: str | None = None
        self.fail_create_if: Callable[[str], bool] | None = None  # by title: fails, nothing stored
        self.fail_comment = False
        self.fail_get = False

    def create_issue(self, title: str, body: str, labels: Sequence[str]) -> TicketRef:
        with self.lock:
            self.calls["create_issue"] += 1
            if self.fail_create == "before" or (
                self.fail_create_if is not None and self.fail_create_if(title)
            ):
                raise TransientError("tracker down")
            if self.fail_create == "crash":
                raise Crash
            issue = FakeIssue(str(len(self.issues) + 1), title, body, list(labels))
            self.issues[issue.id] = issue
            if self.fail_create == "after":
                raise TransientError("timed out after the issue was created")
            if self.fail_create == "crash-after":
                raise Crash
            return TicketRef(issue.id, issue.url)

    def comment(self, ticket_id: str, body: str) -> None:
        with self.lock:
            self.calls["comment"] += 1
            if self.fail_comment:
                raise TransientError("tracker down")
            self.issues[ticket_id].comments.append(body)

    def get(self, ticket_id: str) -> TicketState:
        with self.lock:
            self.calls["get"] += 1
            if self.fail_get:
                raise TransientError("tracker down")
            issue = self.issues.get(ticket_id)
            if issue is None:
                raise NotFoundError(f"issue {ticket_id} not found", status=404)
            return TicketState(
                issue.id,
                issue.url,
                "closed" if issue.state == "closed" else "open",
                "not_planned"
                if issue.closed_reason == "not_planned"
                else ("completed" if issue.closed_reason == "completed" else None),
                tuple(issue.labels),
                issue.closed_at,
            )

    def find_by_label(self, label: str) -> list[TicketRef]:
        with self.lock:
            self.calls["find_by_label"] += 1
            return [TicketRef(i.id, i.url) for i in self.issues.values() if label in i.labels]

    def close(self, ticket_id: str, reason: str = "completed", at: float | None = None) -> None:
        issue = self.issues[ticket_id]
        issue.state, issue.closed_reason, issue.closed_at = "closed", reason, at

    def tickets(self) -> list[FakeIssue]:
        return [i for i in self.issues.values() if not i.title.startswith("[gatehouse] latency digest")]

    def digests(self) -> list[FakeIssue]:
        return [i for i in self.issues.values() if i.title.startswith("[gatehouse] latency digest")]


class FakeSubscription:
    """Messages are leased by pull and gone once acked; ``redeliver`` returns unacked leases."""

    def __init__(self, payloads: Sequence[bytes | tuple[bytes, Mapping[str, str]]] = ()) -> None:
        self.lock = threading.Lock()
        self.available: list[PulledMessage] = []
        self.leased: dict[str, PulledMessage] = {}
        self.acked: list[str] = []
        self.released: list[str] = []
        self._n = 0
        for payload in payloads:
            self.publish(payload)

    def publish(self, payload: bytes | tuple[bytes, Mapping[str, str]]) -> None:
        data, attributes = payload if isinstance(payload, tuple) else (payload, {})
        with self.lock:
            self._n += 1
            self.available.append(PulledMessage(f"ack-{self._n}", data, dict(attributes)))

    def pull(self, max_messages: int) -> list[PulledMessage]:
        with self.lock:
            batch, self.available = self.available[:max_messages], self.available[max_messages:]
            self.leased.update((m.ack_id, m) for m in batch)
            return batch

    def ack(self, ack_ids: Sequence[str]) -> None:
        with self.lock:
            for ack_id in ack_ids:
                if self.leased.pop(ack_id, None) is not None:
                    self.acked.append(ack_id)

    def release(self, ack_ids: Sequence[str]) -> None:
        with self.lock:
            for ack_id in ack_ids:
                message = self.leased.pop(ack_id, None)
                if message is not None:
                    self.released.append(ack_id)
                    self.available.append(message)

    def redeliver(self) -> None:
        with self.lock:
            self.available.extend(self.leased.values())
            self.leased.clear()

    @property
    def pending(self) -> int:
        return len(self.available) + len(self.leased)


class FakeStats:
    def __init__(self, responses: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        self.responses = dict(responses or {})
        self.default: Callable[[str, int, int], Mapping[str, Any]] | None = None
        self.calls: list[tuple[str, str, int, int, str]] = []
        self.lock = threading.Lock()
        self.fail: Exception | None = None
        self.before_call: Callable[[], None] | None = None

    def stats(
        self, environment: str, proxy: str, *, select: Sequence[str], start: int, end: int, time_unit: str
    ) -> Mapping[str, Any]:
        if self.before_call is not None:
            self.before_call()
        with self.lock:
            self.calls.append((environment, proxy, start, end, time_unit))
        if self.fail is not None:
            raise self.fail
        if proxy in self.responses:
            return self.responses[proxy]
        if self.default is not None:
            return self.default(proxy, start, end)
        return {"environments": [], "metaData": {"errors": [], "notices": []}}


OWNED = {"gatehouse-owner": "gatehouse"}  # what registration labels its proxies with (default owner id)


class FakeBundles:
    """Deployed bundles per proxy, and the organization's proxies with their labels: every proxy
    exists and is gatehouse's unless ``proxies`` says otherwise (None: no such proxy)."""

    def __init__(self, bundles: Mapping[str, bytes] | None = None) -> None:
        self.bundles = dict(bundles or {})
        self.proxies: dict[str, Mapping[str, str] | None] = {}
        self.calls: list[tuple[str, str]] = []
        self.label_calls: list[str] = []
        self.fail_labels: Exception | None = None
        self.lock = threading.Lock()

    def deployed_bundle(self, environment: str, proxy: str) -> bytes | None:
        with self.lock:
            self.calls.append((environment, proxy))
        return self.bundles.get(proxy)

    def proxy_labels(self, proxy: str) -> Mapping[str, str] | None:
        with self.lock:
            self.label_calls.append(proxy)
        if self.fail_labels is not None:
            raise self.fail_labels
        return self.proxies.get(proxy, OWNED)


# --------------------------------------------------------------------------------------- builders


def incident(
    *,
    incident_id: str = "0.abc",
    state: str = "open",
    proxy: str | None = "orders-v1",
    environment: str | None = "prod",
    project: str = PROJECT,
    metric: str | None = "apigee.googleapis.com/proxy/latencies",
    resource_type: str = "apigee.googleapis.com/Proxy",
    started_at: int | None = T0,
    ended_at: int | None = None,
    observed: str = "2874.113",
    threshold: str = "2000",
    version: str = "1.2",
    duration: str | None = None,
    org: str | None = None,
) -> dict[str, Any]:
    labels: dict[str, str] = {"org": org or project, "location": "europe-west1"}
    if environment is not None:
        labels["env"] = environment
    if proxy is not None:
        labels["proxy_name"] = proxy
    doc: dict[str, Any] = {
        "incident_id": incident_id,
        "scoping_project_id": project,
        "scoping_project_number": 804214596321,
        "url": f"https://console.cloud.google.com/monitoring/alerting/incidents/{incident_id}?project={project}",
        "state": state,
        "started_at": started_at,
        "ended_at": ended_at,
        "resource": {"type": resource_type, "labels": labels},
        "policy_name": "Apigee p95 latency > 2s",
        "condition_name": f"{proxy} p95 latency",
        "threshold_value": threshold,
        "observed_value": observed,
        "summary": f"Latencies for {proxy} is above the threshold of {threshold} with a value of {observed}.",
    }
    if metric is not None:
        doc["metric"] = {"type": metric, "displayName": "Latencies", "labels": {}}
    if duration is not None:
        threshold = {"duration": duration}
        doc["condition"] = {"displayName": doc["condition_name"], "conditionThreshold": threshold}
    return {"version": version, "incident": doc}


def message(doc: Mapping[str, Any]) -> bytes:
    return json.dumps(doc).encode()


def stats_response(
    proxy: str,
    minutes: Sequence[Mapping[str, float]],
    *,
    start: int,
    environment: str = "prod",
    descending: bool = False,
    global_avg: bool = True,
) -> dict[str, Any]:
    """A timeUnit=minute stats response; each minute maps metric names (``total``...) to numbers."""
    names = {
        "requests": "sum(message_count)",
        "errors": "sum(is_error)",
        "total": "avg(total_response_time)",
        "target": "avg(target_response_time)",
        "request": "avg(request_processing_latency)",
        "response": "avg(response_processing_latency)",
    }
    metrics = []
    order = range(len(minutes) - 1, -1, -1) if descending else range(len(minutes))
    for short, name in names.items():
        values = [
            {"timestamp": (start + i * 60) * 1000, "value": f"{minutes[i][short]:.4f}"}
            for i in order
            if short in minutes[i]
        ]
        if values:
            metrics.append({"name": name, "values": values})
    if global_avg:
        metrics.append({"name": "global-avg-total_response_time", "values": ["410.40625"]})
    return {
        "environments": [{"name": environment, "dimensions": [{"name": proxy, "metrics": metrics}]}],
        "metaData": {"errors": [], "notices": ["Source:Big Query"]},
    }


def bundle_zip(files: Mapping[str, str], *, root: str = "apiproxy") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, text in files.items():
            archive.writestr(f"{root}/{path}" if root else path, text)
    return buffer.getvalue()


TARGET_DIRECT = """<TargetEndpoint name="default">
  <HTTPTargetConnection>
    <Authentication><GoogleIDToken><Audience>https://orders-804214596321.europe-west1.run.app</Audience>
    </GoogleIDToken></Authentication>
    <URL>https://orders-804214596321.europe-west1.run.app/v1</URL>
  </HTTPTargetConnection>
</TargetEndpoint>"""

PROXY_ENDPOINT = """<ProxyEndpoint name="default">
  <PreFlow name="PreFlow"><Request>{steps}</Request><Response/></PreFlow>
  <HTTPProxyConnection><BasePath>/orders</BasePath></HTTPProxyConnection>
  <RouteRule name="default"><TargetEndpoint>default</TargetEndpoint></RouteRule>
</ProxyEndpoint>"""


def direct_bundle(steps: Sequence[str] = (), policies: Mapping[str, str] | None = None) -> bytes:
    step_xml = "".join(f"<Step><Name>{name}</Name></Step>" for name in steps)
    files = {
        "orders-v1.xml": '<APIProxy revision="7" name="orders-v1"/>',
        "proxies/default.xml": PROXY_ENDPOINT.format(steps=step_xml),
        "targets/default.xml": TARGET_DIRECT,
    }
    files.update({f"policies/{name}.xml": xml for name, xml in (policies or {}).items()})
    return bundle_zip(files)
