"""A service's OpenAPI spec: parse and validate it, and read what API products need from it.

The spec comes from whoever deploys the service, so it is hostile input like every label:

- at most :data:`MAX_SPEC_BYTES` (2 MB; Apigee allows 15 MB per resource file, no real spec is near
  2 MB), UTF-8, JSON or YAML, whose root is a mapping with ``openapi: 3.0.x`` or ``3.1.x``;
- YAML anchors and aliases are refused (a "billion laughs" document is a few hundred bytes that
  expand to gigabytes for any walker), as are duplicate keys, non-standard tags and nesting deeper
  than :data:`MAX_DEPTH`; timestamps stay strings, integer keys (``200:``) become strings;
- every ``$ref`` must be local (``#/...``). Nothing outside the document is ever read: a remote or
  relative reference is an error, and the validator's resolver refuses every scheme besides.

Validation is openapi-spec-validator (OpenAPI 3.0 and 3.1 schemas plus its semantic checks),
imported only when a spec is parsed: it is not on the cold path of an event that needs no spec.

:func:`spec_operations` and :func:`spec_scopes` are what API products take from a spec: Apigee
operation resources (``/accounts/{id}`` -> ``/accounts/*``) with their methods, and the OAuth
scopes of its security requirements.

Pure module: standard library, PyYAML, openapi-spec-validator and gatehouse.errors only.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import yaml

from gatehouse.errors import InputError

ANNOTATION = "gatehouse.dev/openapi"
MAX_SPEC_BYTES = 2 * 1024 * 1024
MAX_DEPTH = 64
MAX_NODES = 500_000
MAX_OPERATIONS = 1000
MAX_SCOPES = 256
MAX_ERRORS_SHOWN = 3
DIGEST_LENGTH = 40  # hex characters of sha256 kept in labels and the content hash (160 bits)
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
SUPPORTED = ("3.0", "3.1")

_VERSION = re.compile(r"(3\.[01])\.[0-9]+(?:-[A-Za-z0-9.-]+)?", re.ASCII)
_TEMPLATE = re.compile(r"\{[^{}/]*\}")
# a resource Apigee can match: RFC 3986 path characters, templates already turned into '*'
_RESOURCE = re.compile(r"/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*", re.ASCII)
_SCOPE = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]{1,128}", re.ASCII)  # RFC 6749 scope-token


class SpecError(InputError):
    """The spec is missing, too large or invalid; the message names the annotation."""

    def __init__(self, problem: str) -> None:
        super().__init__(f"annotation {ANNOTATION}: {problem}")
        self.problem = problem


@dataclass(frozen=True)
class OpenApiSpec:
    """A validated spec: the bytes exactly as read (they go into the bundle), the parsed
    document, its OpenAPI version and format."""

    content: bytes
    doc: Mapping[str, Any] = field(repr=False, compare=False)
    version: str  # as written, e.g. "3.0.3"
    format: str  # "json" | "yaml"

    @property
    def minor(self) -> str:
        """``3.0`` or ``3.1``."""
        match = _VERSION.fullmatch(self.version)
        return match[1] if match else ""

    @property
    def filename(self) -> str:
        return f"openapi.{self.format}"

    @property
    def digest(self) -> str:
        return spec_digest(self.content)

    @property
    def identity(self) -> SpecIdentity:
        return SpecIdentity(self.format, self.digest)


@dataclass(frozen=True)
class SpecIdentity:
    """What the content hash needs of a spec, and all a proxy label keeps of it: its format (the
    file name in the bundle) and a digest of its bytes. Renders the label value ``json-<hex>``."""

    format: str
    digest: str

    @property
    def filename(self) -> str:
        return f"openapi.{self.format}"

    @property
    def label(self) -> str:
        return f"{self.format}-{self.digest}"

    @classmethod
    def from_label(cls, value: str | None) -> SpecIdentity | None:
        kind, _, digest = (value or "").partition("-")
        if kind in ("json", "yaml") and re.fullmatch(f"[0-9a-f]{{{DIGEST_LENGTH}}}", digest):
            return cls(kind, digest)
        return None


def spec_digest(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()[:DIGEST_LENGTH]


# --------------------------------------------------------------------------------------------------
# Parsing


class _SpecLoader(yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader):  # type: ignore[misc]
    """SafeLoader without timestamps (they stay strings, as JSON Schema expects), with integer
    keys as strings (unquoted status codes) and duplicate keys refused."""

    yaml_implicit_resolvers: ClassVar[dict[Any, Any]] = {
        first: [(tag, regex) for tag, regex in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, int) and not isinstance(key, bool):
                key = str(key)
            if not isinstance(key, str):
                raise yaml.constructor.ConstructorError(
                    None, None, f"keys must be strings, found {type(key).__name__}", key_node.start_mark
                )
            if key in out:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            out[key] = self.construct_object(value_node, deep=deep)
        return out


_SpecLoader.add_constructor("tag:yaml.org,2002:map", _SpecLoader.construct_mapping)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _reject_constant(value: str) -> None:
    raise ValueError(f"{value} is not JSON")


def _load(text: str) -> tuple[Any, str]:
    if text.lstrip()[:1] in ("{", "["):
        try:
            return (
                json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant),
                "json",
            )
        except RecursionError:
            raise SpecError(f"nesting deeper than {MAX_DEPTH} levels") from None
        except ValueError as exc:
            raise SpecError(f"not valid JSON: {exc}") from None
    try:
        for event in yaml.parse(text, Loader=_SpecLoader):
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                raise SpecError("YAML anchors and aliases are not accepted (write the document out)")
        return yaml.load(text, Loader=_SpecLoader), "yaml"  # noqa: S506 - a SafeLoader subclass
    except RecursionError:
        raise SpecError(f"nesting deeper than {MAX_DEPTH} levels") from None
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark is not None else 0
        raise SpecError(f"not valid YAML (line {line}): {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"not valid YAML: {type(exc).__name__}") from None


def _walk(value: Any, depth: int = 0) -> Iterator[tuple[Any, int]]:
    """Every node with its depth, iteratively (a deep document never exhausts the stack)."""
    stack = [(value, depth)]
    while stack:
        node, level = stack.pop()
        yield node, level
        if isinstance(node, dict):
            stack.extend((v, level + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, level + 1) for v in node)


def _check_shape(doc: Any) -> None:
    for nodes, (node, depth) in enumerate(_walk(doc), 1):
        if depth > MAX_DEPTH:
            raise SpecError(f"nesting deeper than {MAX_DEPTH} levels")
        if nodes > MAX_NODES:
            raise SpecError(f"more than {MAX_NODES} values")
        if isinstance(node, dict):
            ref = node.get("$ref")
            if ref is not None and (not isinstance(ref, str) or not ref.startswith("#")):
                shown = ref[:80] if isinstance(ref, str) else type(ref).__name__
                raise SpecError(
                    f"$ref {shown!r} points outside the document; only local references (#/...) "
                    "are accepted: gatehouse reads nothing but the spec itself"
                )
        elif isinstance(node, float) and math.isnan(node):  # NaN from YAML .nan
            raise SpecError("a number is NaN")


def parse_spec(content: bytes) -> OpenApiSpec:
    """Validate ``content`` as an OpenAPI 3.0 or 3.1 document; :class:`SpecError` says why not."""
    if len(content) > MAX_SPEC_BYTES:
        megabytes = MAX_SPEC_BYTES // (1024 * 1024)
        raise SpecError(f"the spec is larger than {megabytes} MB ({len(content)} bytes)")
    if not content.strip():
        raise SpecError("the spec is empty")
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise SpecError("the spec is not UTF-8 text") from None
    doc, kind = _load(text)
    if not isinstance(doc, dict):
        raise SpecError(f"the spec must be a mapping (an OpenAPI document), got {type(doc).__name__}")
    _check_shape(doc)
    version = doc.get("openapi")
    if not isinstance(version, str):
        hint = " (Swagger 2.0 is not supported)" if "swagger" in doc else ""
        raise SpecError(f"no 'openapi' version string: only OpenAPI 3.0 and 3.1 are accepted{hint}")
    match = _VERSION.fullmatch(version)
    if match is None:
        raise SpecError(f"OpenAPI version {version[:20]!r} is not 3.0.x or 3.1.x")
    _validate(doc, match[1])
    spec_operations(doc)  # paths Apigee cannot match fail here, not when the product is written
    spec_scopes(doc)
    return OpenApiSpec(content=content, doc=doc, version=version, format=kind)


class _RefuseAll(dict[str, Any]):
    """Resolver handlers for every URI scheme, each refusing: jsonschema-path falls back to urllib
    for a scheme it has no handler for, so an empty mapping would still reach the network."""

    def __contains__(self, key: object) -> bool:
        return True

    def __getitem__(self, key: str) -> Any:
        def refuse(uri: str) -> Any:
            raise SpecError(f"reference {uri[:80]!r} points outside the document")

        return refuse


def _validate(doc: dict[str, Any], minor: str) -> None:
    from openapi_spec_validator import OpenAPIV30SpecValidator, OpenAPIV31SpecValidator

    base = OpenAPIV30SpecValidator if minor == "3.0" else OpenAPIV31SpecValidator
    validator_class = type("Validator", (base,), {"resolver_handlers": _RefuseAll()})
    problems: list[str] = []
    try:
        for error in validator_class(doc).iter_errors():
            where = "/".join(str(p) for p in getattr(error, "absolute_path", ()) or ())
            message = str(getattr(error, "message", error)).splitlines()[0][:200]
            problems.append(f"{where or '(root)'}: {message}")
            if len(problems) >= MAX_ERRORS_SHOWN:
                break
    except SpecError:
        raise
    except RecursionError:
        raise SpecError("references nest too deeply (a $ref cycle?)") from None
    except Exception as exc:  # the validator's resolver fails on unresolvable local references
        raise SpecError(f"invalid OpenAPI {minor} document: {type(exc).__name__}: {str(exc)[:200]}") from None
    if problems:
        raise SpecError(f"invalid OpenAPI {minor} document: " + "; ".join(problems))


# --------------------------------------------------------------------------------------------------
# What API products take from a spec


def _local(doc: Mapping[str, Any], item: Any) -> Any:
    """Follow a local ``$ref`` (path items and security schemes may be references)."""
    for _ in range(16):  # bounded: a reference cycle ends here
        if not isinstance(item, Mapping) or not isinstance(item.get("$ref"), str):
            return item
        target: Any = doc
        for part in item["$ref"].removeprefix("#").split("/")[1:]:
            key = part.replace("~1", "/").replace("~0", "~")
            target = target.get(key) if isinstance(target, Mapping) else None
        item = target
    return None


def _server_prefix(doc: Mapping[str, Any]) -> str:
    """The path of the first server URL, when it is a fixed path (``/api`` of ``https://h/api``)."""
    servers = doc.get("servers")
    if not isinstance(servers, list) or not servers or not isinstance(servers[0], Mapping):
        return ""
    url = servers[0].get("url")
    if not isinstance(url, str) or "{" in url:
        return ""
    path = re.sub(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/]*", "", url)
    return "/" + path.strip("/") if path.strip("/") else ""


def spec_operations(doc: Mapping[str, Any], *, base_path: str = "") -> list[tuple[str, list[str]]]:
    """Apigee operation resources from the spec's paths, relative to the proxy's base path, each
    with its methods upper-case: ``/accounts/{id}`` -> ``("/accounts/*", ["GET", "PUT"])``.

    The paths are the service's own; a fixed path in the first server URL is put in front of them
    (the service serves under it), unless that prefix is the proxy's ``base_path`` (a spec written
    for the gateway's address). A template stands for one segment; a segment with a template in it
    (``{name}.json``) becomes ``*`` too. Paths that collapse onto one resource share it. Sorted."""
    paths = doc.get("paths")
    if not isinstance(paths, Mapping):
        return []
    prefix = _server_prefix(doc)
    if base_path and (prefix == base_path.rstrip("/")):
        prefix = ""
    found: dict[str, set[str]] = {}
    for path, raw in paths.items():
        if not isinstance(path, str) or not path.startswith("/"):
            raise SpecError(f"path {str(path)[:80]!r} must start with '/'")
        item = _local(doc, raw)
        if not isinstance(item, Mapping):
            continue
        methods = {m.upper() for m in HTTP_METHODS if isinstance(item.get(m), Mapping)}
        if not methods:
            continue
        segments = [("*" if _TEMPLATE.search(s) else s) for s in (prefix + path).split("/")]
        resource = "/".join(segments) or "/"
        if len(resource) > 1 and resource.endswith("/"):
            resource = resource.rstrip("/") or "/"
        if _RESOURCE.fullmatch(resource) is None or "{" in resource or "}" in resource:
            raise SpecError(f"path {path[:80]!r} is not a URL path Apigee can match")
        found.setdefault(resource, set()).update(methods)
    if len(found) > MAX_OPERATIONS:
        raise SpecError(f"more than {MAX_OPERATIONS} distinct paths")
    return [(resource, sorted(found[resource])) for resource in sorted(found)]


def spec_scopes(doc: Mapping[str, Any]) -> list[str]:
    """The OAuth scopes the spec's security requirements name (document-wide and per operation),
    for schemes of type ``oauth2`` or ``openIdConnect``; sorted, without duplicates. In OpenAPI
    3.1 other scheme types may list role names there: they are not scopes and are left out."""
    components = doc.get("components")
    schemes = components.get("securitySchemes") if isinstance(components, Mapping) else None
    kinds: dict[str, str] = {}
    if isinstance(schemes, Mapping):
        for name, scheme in schemes.items():
            resolved = _local(doc, scheme)
            if isinstance(resolved, Mapping) and isinstance(resolved.get("type"), str):
                kinds[str(name)] = resolved["type"]
    requirements: list[Any] = []
    if isinstance(doc.get("security"), list):
        requirements += doc["security"]
    paths = doc.get("paths")
    for raw in paths.values() if isinstance(paths, Mapping) else ():
        item = _local(doc, raw)
        if not isinstance(item, Mapping):
            continue
        for method in HTTP_METHODS:
            operation = item.get(method)
            if isinstance(operation, Mapping) and isinstance(operation.get("security"), list):
                requirements += operation["security"]
    scopes: set[str] = set()
    for requirement in requirements:
        if not isinstance(requirement, Mapping):
            continue
        for scheme, names in requirement.items():
            if kinds.get(str(scheme)) not in ("oauth2", "openIdConnect") or not isinstance(names, list):
                continue
            for scope in names:
                if not isinstance(scope, str) or _SCOPE.fullmatch(scope) is None:
                    raise SpecError(f"security scope {str(scope)[:80]!r} is not an OAuth scope token")
                scopes.add(scope)
    if len(scopes) > MAX_SCOPES:
        raise SpecError(f"more than {MAX_SCOPES} distinct scopes")
    return sorted(scopes)
