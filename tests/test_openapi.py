"""OpenAPI specs: parsing and validation (hostile documents included), and what API products take
from a spec (operations, scopes)."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gatehouse.registration.openapi import (
    MAX_SPEC_BYTES,
    SpecError,
    SpecIdentity,
    parse_spec,
    spec_operations,
    spec_scopes,
)

FIXTURES = Path(__file__).parent / "fixtures" / "openapi"
ORDERS = (FIXTURES / "orders-3.0.yaml").read_bytes()
LEDGER = (FIXTURES / "ledger-3.1.json").read_bytes()
MINIMAL = b'openapi: 3.1.0\ninfo: {title: t, version: "1"}\npaths: {}\n'


def test_a_3_0_yaml_spec_is_accepted_as_read() -> None:
    spec = parse_spec(ORDERS)
    assert (spec.version, spec.minor, spec.format, spec.filename) == ("3.0.3", "3.0", "yaml", "openapi.yaml")
    assert spec.content == ORDERS
    # unquoted status codes are string keys; timestamps stay strings
    assert "200" in spec.doc["paths"]["/orders"]["get"]["responses"]
    created = spec.doc["components"]["schemas"]["Order"]["properties"]["created"]["example"]
    assert created == "2026-01-01T00:00:00Z"


def test_a_3_1_json_spec_is_accepted() -> None:
    spec = parse_spec(LEDGER)
    assert (spec.minor, spec.format, spec.filename) == ("3.1", "json", "openapi.json")


def test_identity_round_trips_through_its_label() -> None:
    identity = parse_spec(ORDERS).identity
    assert len(identity.label) <= 63
    assert SpecIdentity.from_label(identity.label) == identity
    assert SpecIdentity.from_label("yaml-nothex") is None
    assert SpecIdentity.from_label(None) is None


def test_operations_turn_templates_into_wildcards() -> None:
    assert spec_operations(parse_spec(ORDERS).doc) == [
        ("/orders", ["GET", "POST"]),
        ("/orders/*", ["DELETE", "GET"]),
    ]
    assert spec_operations(parse_spec(LEDGER).doc) == [
        ("/accounts/*", ["GET", "PUT"]),
        ("/accounts/*/entries/*", ["GET"]),
    ]


def test_operations_put_a_fixed_server_path_in_front_unless_it_is_the_base_path() -> None:
    doc = {
        "servers": [{"url": "https://api.example.com/api"}],
        "paths": {"/items/{id}": {"get": {}}, "/": {"post": {}}, "/empty": {"parameters": []}},
    }
    assert spec_operations(doc) == [("/api", ["POST"]), ("/api/items/*", ["GET"])]
    assert spec_operations(doc, base_path="/api") == [("/", ["POST"]), ("/items/*", ["GET"])]
    templated = {"servers": [{"url": "https://{region}.example.com/v1"}], "paths": {"/x": {"get": {}}}}
    assert spec_operations(templated) == [("/x", ["GET"])]


def test_paths_that_collapse_share_one_resource_and_local_path_refs_are_followed() -> None:
    doc = {
        "paths": {
            "/a/{x}": {"get": {}},
            "/a/{y}": {"delete": {}},
            "/b": {"$ref": "#/components/pathItems/B"},
        },
        "components": {"pathItems": {"B": {"patch": {}}}},
    }
    assert spec_operations(doc) == [("/a/*", ["DELETE", "GET"]), ("/b", ["PATCH"])]


def test_scopes_come_from_oauth_and_oidc_requirements_only() -> None:
    assert spec_scopes(parse_spec(ORDERS).doc) == ["orders.read", "orders.write"]
    assert spec_scopes(parse_spec(LEDGER).doc) == ["ledger"]
    doc = {
        "security": [{"roles": ["admin"]}],
        "components": {"securitySchemes": {"roles": {"type": "http", "scheme": "bearer"}}},
        "paths": {},
    }
    assert spec_scopes(doc) == []  # OpenAPI 3.1 lets other schemes list roles: not scopes


def test_a_scope_that_is_no_oauth_token_is_refused() -> None:
    doc = {
        "security": [{"o": ["bad scope"]}],
        "components": {"securitySchemes": {"o": {"type": "oauth2"}}},
    }
    with pytest.raises(SpecError, match="not an OAuth scope token"):
        spec_scopes(doc)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"", "empty"),
        (b"[1, 2]", "must be a mapping"),
        (b"just text", "must be a mapping"),
        (b"\xff\xfe\x00", "not UTF-8"),
        (b"swagger: '2.0'\ninfo: {}\n", "Swagger 2.0 is not supported"),
        (b"openapi: 3.2.0\ninfo: {}\n", "not 3.0.x or 3.1.x"),
        (b"openapi: 3.0.3\ninfo: {title: t}\npaths: {}\n", "invalid OpenAPI 3.0"),
        (b"openapi: 3.0.3\nopenapi: 3.1.0\n", "duplicate key"),
        (b'{"openapi": "3.1.0", "openapi": "3.1.0"}', "duplicate key"),
        (b"openapi: 3.1.0\nx: !!python/object:os.system ls\n", "not valid YAML"),
        (b'{"openapi": NaN}', "not valid JSON"),
        (b"{" * 200_000, "not valid JSON"),
        (b"a:\n" + b"".join(b"  " * i + b"- \n" for i in range(1, 80)), ""),
    ],
)
def test_invalid_documents_fail_naming_the_annotation(content: bytes, problem: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(content)
    assert str(info.value).startswith("annotation gatehouse.dev/openapi: ")
    assert problem in str(info.value)


def test_deep_nesting_is_refused() -> None:
    deep = b'{"openapi": "3.1.0", "x": ' + b"[" * 100 + b"]" * 100 + b"}"
    with pytest.raises(SpecError, match="nesting deeper"):
        parse_spec(deep)
    deep_yaml = b"openapi: 3.1.0\nx: " + b"[" * 100 + b"]" * 100 + b"\n"
    with pytest.raises(SpecError, match="nesting deeper"):
        parse_spec(deep_yaml)


def test_a_yaml_bomb_is_refused_before_it_expands() -> None:
    lines = ["openapi: 3.1.0", 'a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    started = time.perf_counter()
    with pytest.raises(SpecError, match="anchors and aliases"):
        parse_spec("\n".join(lines).encode())
    assert time.perf_counter() - started < 2.0


def test_a_spec_over_the_limit_is_refused_unread() -> None:
    big = MINIMAL + b"#" * MAX_SPEC_BYTES
    with pytest.raises(SpecError, match="larger than 2 MB"):
        parse_spec(big)


def test_a_spec_just_under_the_limit_is_accepted() -> None:
    filler = b"x-padding: '" + b"p" * (MAX_SPEC_BYTES - len(MINIMAL) - 20) + b"'\n"
    spec = parse_spec(MINIMAL + filler)
    assert len(spec.content) <= MAX_SPEC_BYTES


@pytest.fixture
def counting_server() -> Iterator[tuple[str, list[str]]]:
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            body = json.dumps({"type": "string"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", hits
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    "ref",
    ["{base}/schema.json", "{base}/schema.json#/x", "./other.yaml", "file:///etc/passwd", "other.yaml#/a"],
)
def test_references_outside_the_document_are_refused_and_never_fetched(
    ref: str, counting_server: tuple[str, list[str]]
) -> None:
    base, hits = counting_server
    doc = {
        "openapi": "3.1.0",
        "info": {"title": "t", "version": "1"},
        "paths": {},
        "components": {"schemas": {"A": {"$ref": ref.format(base=base)}}},
    }
    with pytest.raises(SpecError, match="outside the document"):
        parse_spec(json.dumps(doc).encode())
    assert hits == []


def test_a_schema_id_cannot_turn_a_local_reference_into_a_fetch(
    counting_server: tuple[str, list[str]],
) -> None:
    base, hits = counting_server
    doc = {
        "openapi": "3.1.0",
        "info": {"title": "t", "version": "1"},
        "paths": {},
        "components": {"schemas": {"A": {"$id": f"{base}/root.json", "$ref": "#/$defs/B"}}},
    }
    with pytest.raises(SpecError):
        parse_spec(json.dumps(doc).encode())
    assert hits == []


def test_a_path_apigee_cannot_match_is_refused() -> None:
    doc = (
        b'openapi: 3.1.0\ninfo: {title: t, version: "1"}\n'
        b'paths:\n  "/a b":\n    get: {responses: {"200": {description: ok}}}\n'
    )
    with pytest.raises(SpecError, match="not a URL path"):
        parse_spec(doc)
