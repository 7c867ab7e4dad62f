"""gatehouse.events is total: any input decodes to a JSON-ready event or raises InputError, nothing else."""

from __future__ import annotations

import base64
import copy
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gatehouse.errors import InputError
from gatehouse.events import decode, decode_cloud_event

FIXTURES = Path(__file__).parent / "fixtures" / "events"
DOCS = {
    path.relative_to(FIXTURES).as_posix(): json.loads(path.read_text()) for path in FIXTURES.rglob("*.json")
}
SERVICE_ENTRIES = [
    rel for rel in sorted(DOCS) if rel.startswith("audit/") and decode(DOCS[rel]).kind == "service-change"
]
AUDIT_TYPE = "google.cloud.audit.log.v1.written"
PUBSUB_TYPE = "google.cloud.pubsub.topic.v1.messagePublished"

# What an accepted event may carry: identifiers that later reach API paths always match these.
PATTERNS = {
    "project": re.compile(r"[a-z][a-z0-9-]{4,28}[a-z0-9]|[0-9]{1,20}"),
    "region": re.compile(r"[a-z]+-[a-z]+[0-9]+"),
    "service": re.compile(r"[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?"),
}
INCIDENT_PATTERNS = {
    "project": PATTERNS["project"],
    "environment": re.compile(r"[a-z][a-z0-9-]{0,31}"),
    "proxy": re.compile(r"[A-Za-z0-9._-]{1,255}"),
}
HOSTILE = [
    "<script>alert(1)</script>",
    'x" onmouseover="alert(1)',
    "a\r\nX-Injected: 1",
    "orders-api\n",
    "../../etc/passwd",
    "projects/p/locations/r/services/s",
    "\u202eipa-sredro",
    "\uff4f\uff52\uff44\uff45\uff52\uff53",
    "ordérs",
    "\x00",
    "'; DROP TABLE services; --",
    "${jndi:ldap://x/a}",
    "A" * 300,
    "",
    " ",
    "\ud800",
]
EXAMPLES = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

KEYS = st.sampled_from(
    [
        "message",
        "data",
        "attributes",
        "specversion",
        "type",
        "protoPayload",
        "methodName",
        "serviceName",
        "resourceName",
        "resource",
        "labels",
        "logName",
        "insertId",
        "operation",
        "status",
        "code",
        "incident",
        "version",
        "state",
        "command",
        "service",
        "mode",
        "eventType",
        "secretId",
    ]
) | st.text(max_size=8)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(HOSTILE)
)
JSON = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(KEYS, children, max_size=5),
    max_leaves=25,
)


def outcome(call: Callable[[], Any]) -> dict[str, Any] | None:
    """Run one decode; assert the contract; return the event dict (or None for InputError)."""
    try:
        event = call()
    except InputError as exc:
        text = str(exc)
        assert text
        assert "\n" not in text and "\r" not in text
        return None
    out = event.to_dict()
    assert isinstance(out, dict)
    json.dumps(out, allow_nan=False).encode("utf-8")
    if out["kind"] == "service-change":
        for key, pattern in PATTERNS.items():
            assert pattern.fullmatch(out[key]), (key, out[key])
    if out["kind"] == "incident":
        for key, pattern in INCIDENT_PATTERNS.items():
            assert out[key] is None or pattern.fullmatch(out[key]), (key, out[key])
    if out["kind"] == "ignored":
        assert out["reason"].isprintable()
    return out


def b64(doc: Any) -> str:
    return base64.b64encode(json.dumps(doc).encode()).decode()


def wrappers(doc: Any) -> list[Callable[[], Any]]:
    """The same document delivered bare (bytes and parsed), in a push envelope and as CloudEvents."""
    message = {"data": b64(doc), "messageId": "1", "publishTime": "2025-01-01T00:00:00Z"}
    return [
        lambda: decode(json.dumps(doc).encode()),
        lambda: decode(copy.deepcopy(doc)) if isinstance(doc, dict) else decode(json.dumps(doc)),
        lambda: decode({"message": message, "subscription": "projects/p/subscriptions/s"}),
        lambda: decode_cloud_event({"type": PUBSUB_TYPE}, {"message": message}),
        lambda: decode_cloud_event({"type": AUDIT_TYPE}, copy.deepcopy(doc)),
    ]


@EXAMPLES
@given(st.binary(max_size=2048))
def test_arbitrary_bytes(raw: bytes) -> None:
    outcome(lambda: decode(raw))
    outcome(
        lambda: decode(raw, attributes={"eventType": "SECRET_ROTATE", "secretId": "projects/p1/secrets/s"})
    )


@EXAMPLES
@given(st.text(max_size=300))
def test_arbitrary_text(text: str) -> None:
    outcome(lambda: decode(text))


@EXAMPLES
@given(JSON)
def test_arbitrary_json_in_every_wrapper(doc: Any) -> None:
    results = []
    for deliver in wrappers(doc)[:3]:
        results.append(outcome(deliver))
    # bare bytes and the parsed document must agree
    assert results[0] == results[1]
    for deliver in wrappers(doc)[3:]:
        outcome(deliver)


@EXAMPLES
@given(JSON, st.dictionaries(st.text(max_size=10), st.text(max_size=20), max_size=4))
def test_arbitrary_cloud_events_and_attributes(data: Any, attributes: dict[str, str]) -> None:
    for event_type in (AUDIT_TYPE, PUBSUB_TYPE, "other", None):
        outcome(lambda event_type=event_type: decode_cloud_event({"type": event_type, **attributes}, data))
    outcome(lambda: decode(json.dumps(data), attributes=attributes))


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key/index path in a JSON document."""
    found: list[tuple[Any, ...]] = []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    for key, child in items:
        found.append((*prefix, key))
        found.extend(paths(child, (*prefix, key)))
    return found


def parent_of(doc: Any, path: tuple[Any, ...]) -> Any:
    for key in path[:-1]:
        doc = doc[key]
    return doc


@st.composite
def mutated(draw: st.DrawFn) -> Any:
    """A fixture with one to four keys dropped, retyped, or replaced by hostile text."""
    doc = copy.deepcopy(DOCS[draw(st.sampled_from(sorted(DOCS)))])
    for _ in range(draw(st.integers(1, 4))):
        every = paths(doc)
        if not every:
            break
        path = draw(st.sampled_from(every))
        parent = parent_of(doc, path)
        action = draw(st.sampled_from(["drop", "retype", "hostile", "append"]))
        if action == "drop":
            del parent[path[-1]]
        elif action == "retype":
            parent[path[-1]] = draw(JSON)
        elif action == "hostile":
            parent[path[-1]] = draw(st.sampled_from(HOSTILE) | st.text(max_size=12))
        else:
            current = parent[path[-1]]
            if isinstance(current, str):
                parent[path[-1]] = current + draw(st.sampled_from(HOSTILE))
    return doc


@EXAMPLES
@given(mutated())
def test_mutated_fixtures_in_every_wrapper(doc: Any) -> None:
    for deliver in wrappers(doc):
        outcome(deliver)


@EXAMPLES
@given(
    st.sampled_from(SERVICE_ENTRIES),
    st.sampled_from(
        [
            ("resource", "labels", "project_id"),
            ("resource", "labels", "location"),
            ("resource", "labels", "service_name"),
            ("protoPayload", "resourceName"),
            ("protoPayload", "request", "name"),
            ("protoPayload", "request", "region"),
            ("protoPayload", "request", "parent"),
            ("protoPayload", "request", "serviceId"),
        ]
    ),
    st.sampled_from(HOSTILE)
    | st.text(min_size=1, max_size=40).filter(lambda s: not any(p.fullmatch(s) for p in PATTERNS.values())),
    st.booleans(),
    st.booleans(),
)
def test_hostile_identifiers_never_reach_the_output(
    rel: str, where: tuple[str, ...], hostile: str, as_segment: bool, drop_labels: bool
) -> None:
    entry = copy.deepcopy(DOCS[rel])
    if drop_labels:
        entry.get("resource", {}).pop("labels", None)
    parent = entry
    for key in where[:-1]:
        parent = parent.setdefault(key, {})
    current = parent.get(where[-1])
    if as_segment and isinstance(current, str) and "/" in current:
        parts = current.split("/")
        parts[1] = hostile  # the project segment of namespaces/P/... or projects/P/...
        parent[where[-1]] = "/".join(parts)
    else:
        parent[where[-1]] = hostile
    for deliver in wrappers(entry):
        out = outcome(deliver)
        if out is not None and out["kind"] == "service-change":
            assert hostile not in (out["project"], out["region"], out["service"])
            if hostile in HOSTILE and hostile.strip():
                assert all(hostile not in out[key] for key in PATTERNS)
