"""Google's discovery documents as the single source of routes and field names for the stand-ins.

A stand-in that invents a route or a field lets production code pass locally and fail against the
real API. So every route a stand-in serves is a method of the discovery document shipped in
google-api-python-client (``googleapiclient/discovery_cache/documents/<api>.json``), requests are
matched against the document's path templates, and responses can be checked against its schemas.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

# Parameters every Google API accepts besides a method's own (``$alt`` is what the GAPIC REST
# transports send: ``$alt=json;enum-encoding=int``).
_EXTRA_QUERY = frozenset({"$alt"})


class DiscoveryError(LookupError):
    """A method id or schema that the discovery document does not define."""


@functools.cache
def load(api: str) -> dict[str, Any]:
    """The discovery document ``api`` (e.g. ``apigee.v1``) from the installed googleapiclient."""
    docs = resources.files("googleapiclient") / "discovery_cache" / "documents"
    try:
        return json.loads((docs / f"{api}.json").read_text(encoding="utf-8"))  # type: ignore[no-any-return]
    except FileNotFoundError as exc:
        raise DiscoveryError(f"no discovery document {api!r} in googleapiclient") from exc


@dataclass(frozen=True)
class Method:
    """One REST method: ``id`` like ``apigee.organizations.apis.create``."""

    id: str
    http_method: str
    path: str  # e.g. v1/{+parent}/apis
    flat_path: str  # e.g. v1/organizations/{organizationsId}/apis
    parameters: dict[str, Any] = field(repr=False)
    request: str | None
    response: str | None
    regex: re.Pattern[str] = field(repr=False)
    groups: dict[str, str] = field(repr=False)  # regex group -> parameter name
    specificity: tuple[int, int] = field(repr=False)

    @property
    def route(self) -> str:
        """The route template used as the statistics key (without the verb)."""
        return "/" + self.flat_path

    @property
    def query_parameters(self) -> frozenset[str]:
        return frozenset(k for k, v in self.parameters.items() if v.get("location") == "query")


def _compile(
    path: str, parameters: dict[str, Any]
) -> tuple[re.Pattern[str], dict[str, str], tuple[int, int]]:
    """A regex for a path template: ``{+name}`` takes the parameter's ``pattern`` (reserved
    expansion, may span ``/``), ``{name}`` one segment."""
    out: list[str] = []
    groups: dict[str, str] = {}
    literal = pattern_literal = 0
    for i, piece in enumerate(re.split(r"(\{\+?[^}]+\})", path)):
        if i % 2 == 0:
            out.append(re.escape(piece))
            literal += len(piece)
            continue
        reserved = piece.startswith("{+")
        name = piece[2:-1] if reserved else piece[1:-1]
        group = f"p{len(groups)}"
        groups[group] = name
        pattern = parameters.get(name, {}).get("pattern")
        if pattern:
            inner = pattern.removeprefix("^").removesuffix("$")
            pattern_literal += len(re.sub(r"\[[^\]]*\][+*]?|\.\*|\.\+", "", inner))
        else:
            inner = ".+" if reserved else "[^/]+"
        out.append(f"(?P<{group}>{inner})")
    return re.compile("/" + "".join(out)), groups, (literal, pattern_literal)


class Discovery:
    """Methods and schemas of one discovery document."""

    def __init__(self, api: str) -> None:
        self.api = api
        self.doc = load(api)
        self.schemas: dict[str, Any] = self.doc.get("schemas", {})
        self.global_query = frozenset(self.doc.get("parameters", {})) | _EXTRA_QUERY
        self.methods: dict[str, Method] = {}
        self._collect(self.doc)
        # most literal text first, so that ``.../services/x:getIamPolicy`` beats ``.../services/{id}``
        self._ordered = sorted(self.methods.values(), key=lambda m: m.specificity, reverse=True)

    def _collect(self, node: dict[str, Any]) -> None:
        for spec in node.get("methods", {}).values():
            params = spec.get("parameters", {})
            path = self.doc.get("servicePath", "") + spec["path"]
            regex, groups, specificity = _compile(path, params)
            self.methods[spec["id"]] = Method(
                id=spec["id"],
                http_method=spec["httpMethod"],
                path=spec["path"],
                flat_path=self.doc.get("servicePath", "") + spec.get("flatPath", spec["path"]),
                parameters=params,
                request=spec.get("request", {}).get("$ref"),
                response=spec.get("response", {}).get("$ref"),
                regex=regex,
                groups=groups,
                specificity=specificity,
            )
        for child in node.get("resources", {}).values():
            self._collect(child)

    def method(self, method_id: str) -> Method:
        try:
            return self.methods[method_id]
        except KeyError:
            raise DiscoveryError(f"{self.api} has no method {method_id!r}") from None

    def match(
        self, verb: str, path: str, among: set[str] | None = None
    ) -> tuple[Method, dict[str, str]] | None:
        """The method (restricted to ids in ``among`` if given) serving ``verb path``, with its
        path parameters (``{"name": "organizations/o/apis/a"}``)."""
        for method in self._ordered:
            if method.http_method != verb or (among is not None and method.id not in among):
                continue
            found = method.regex.fullmatch(path)
            if found:
                return method, {method.groups[g]: v for g, v in found.groupdict().items()}
        return None

    # -- schemas ----------------------------------------------------------------------------

    def schema(self, name: str) -> dict[str, Any]:
        try:
            return self.schemas[name]  # type: ignore[no-any-return]
        except KeyError:
            raise DiscoveryError(f"{self.api} has no schema {name!r}") from None

    def check_fields(self, schema: str, obj: Any) -> list[str]:
        """Problems of ``obj`` against ``schema``: fields the schema does not define, JSON types
        that do not match (int64 must be a string), enum values it does not list. Empty if fine.
        Typed ``Any`` values (``{"@type": "type.googleapis.com/google.cloud.run.v2.Service", ...}``)
        are checked against the schema of that type when the document has it."""
        problems: list[str] = []
        self._walk({"$ref": schema}, obj, "", problems, prune=False)
        return problems

    def prune(self, schema: str, obj: Any) -> Any:
        """A copy of ``obj`` without the fields ``schema`` does not define."""
        return self._walk({"$ref": schema}, obj, "", [], prune=True)

    def strip_read_only(self, schema: str, obj: dict[str, Any]) -> dict[str, Any]:
        """A copy of ``obj`` without top-level output-only fields (what a real API ignores on input)."""
        props = self.schema(schema).get("properties", {})
        return {k: v for k, v in obj.items() if not props.get(k, {}).get("readOnly")}

    def _typed_any(self, value: dict[str, Any]) -> str | None:
        type_url = value.get("@type")
        if not isinstance(type_url, str):
            return None
        # google.cloud.run.v2.Service -> GoogleCloudRunV2Service
        full = type_url.rsplit("/", 1)[-1]
        name = "".join(p[:1].upper() + p[1:] for p in full.split("."))
        return name if name in self.schemas else None

    def _walk(self, spec: dict[str, Any], value: Any, where: str, problems: list[str], prune: bool) -> Any:
        if "$ref" in spec:
            spec = self.schema(spec["$ref"])
        kind = spec.get("type")
        if kind == "any" or (kind == "object" and spec.get("additionalProperties", {}).get("type") == "any"):
            typed = self._typed_any(value) if isinstance(value, dict) else None
            if typed:
                rest = {k: v for k, v in value.items() if k != "@type"}
                checked = self._walk({"$ref": typed}, rest, where, problems, prune)
                return {"@type": value["@type"], **checked}
            return value
        if kind == "array":
            if not isinstance(value, list):
                problems.append(f"{where or '.'}: expected a JSON array")
                return value
            return [
                self._walk(spec["items"], v, f"{where}[{i}]", problems, prune) for i, v in enumerate(value)
            ]
        if kind == "object":
            if not isinstance(value, dict):
                problems.append(f"{where or '.'}: expected a JSON object")
                return value
            props, extra = spec.get("properties"), spec.get("additionalProperties")
            out = {}
            for key, item in value.items():
                sub = f"{where}.{key}" if where else key
                if props is not None and key in props:
                    out[key] = self._walk(props[key], item, sub, problems, prune)
                elif extra is not None:
                    out[key] = self._walk(extra, item, sub, problems, prune)
                else:
                    problems.append(f"{sub}: not a field of the schema")
            return out
        self._check_scalar(spec, value, where, problems)
        return value

    @staticmethod
    def _check_scalar(spec: dict[str, Any], value: Any, where: str, problems: list[str]) -> None:
        kind = spec.get("type")
        ok = {
            "string": isinstance(value, str),
            "boolean": isinstance(value, bool),
            "integer": isinstance(value, int) and not isinstance(value, bool),
            "number": isinstance(value, int | float) and not isinstance(value, bool),
        }.get(str(kind), True)
        if not ok:
            fmt = f" ({spec['format']})" if "format" in spec else ""
            problems.append(f"{where}: expected {kind}{fmt}, got {type(value).__name__}")
        elif "enum" in spec and value not in spec["enum"]:
            problems.append(f"{where}: {value!r} is not one of the enum values")
