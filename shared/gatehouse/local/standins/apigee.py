"""Stand-in for the Apigee management API v1 (discovery document ``apigee.v1``).

Apigee X has no emulator, and the registration flow depends on its semantics (revisions, deploy
preconditions, asynchronous deployment state, base-path conflicts), so this stand-in implements
them behind Google's exact routes and JSON. Production code reaches it through the same
``AuthorizedSession`` REST calls it makes against apigee.googleapis.com.

Run: ``python -m gatehouse.local.standins.apigee --port 8601 [--state-file F] [--org local-org]
[--env test --env prod] [--deploy-delay-ms 300]``; in-process: ``start(port=0, org=..., envs=...,
deploy_delay_ms=...)`` returns a handle with ``.url`` and ``.stop()``.

Semantics (see api-facts A1-A10):

- import (``apis.create?action=import``) takes the zip as a ``multipart/form-data`` file part (the
  discovery document names the form field ``file``; as the API does, any file part is taken); any
  other content type (a raw ``application/octet-stream`` body included) gets 400 INVALID_ARGUMENT
  with a BadRequest field violation on ``file``, and creates nothing. The zip root must be
  ``apiproxy/`` with one base config ``apiproxy/<name>.xml``; XML is parsed, Step/RouteRule
  references checked; bad bundles get 400 INVALID_ARGUMENT "bundle contains errors" with
  PreconditionFailure violations. Each import adds a revision.
- deploy: same revision deployed -> 400 FAILED_PRECONDITION "revision ... is already deployed"
  (override or not; the wording is :data:`ALREADY_DEPLOYED`, which tests vary);
  another revision deployed without ``override`` -> 400 FAILED_PRECONDITION CONFLICTING_DEPLOYMENT;
  a bundle with ``Authentication/GoogleIDToken|GoogleAccessToken`` and no ``serviceAccount`` ->
  MISSING_SERVICE_ACCOUNT. A different proxy already deployed in the environment with an
  overlapping base path does not fail the deploy: the new deployment reports ``routeConflicts``
  and that base path stays routed to the earlier deployment (each environment has its own
  environment group ``<env>-group``).
- deployment state (``getDeployments``): PROGRESSING until ``--deploy-delay-ms`` have passed since
  the deploy, then READY.

Test hooks:

- ERROR marker: a bundle whose base config ``<Description>`` contains ``standin:deploy-error``
  deploys, but its deployment state is ERROR with ``errors[]``.
- Analytics seeding for ``environments.stats.get``: ``POST /_standin/apigee/stats`` with a record or
  a list of records ``{"environment": "prod", "proxy": "orders", "timestamp": <ms, default now>,
  "metrics": {"total_response_time": 120, "target_response_time": 80, "message_count": 1}}``
  (``"dimensions": {"apiproxy": ..., "request_verb": ...}`` instead of ``proxy`` for other
  dimensions). Each record is one sample: ``sum``/``avg``/``min``/``max``/``count``/``p50``..``p99``
  aggregate over samples. ``DELETE /_standin/apigee/stats`` clears them.
- Plus the base hooks (stats, faults, health) described in :mod:`gatehouse.local.standins.server`.

There is no ``organizations.environments.list`` in the v1 discovery document, so it is not served:
clients read the environment names from ``organizations.get`` (``environments[]``) or check one
with ``organizations.environments.get``.
"""

from __future__ import annotations

import base64
import io
import math
import posixpath
import re
import sys
import time
import uuid
import xml.etree.ElementTree as ET
import zipfile
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from werkzeug.wrappers import Request, Response

from gatehouse.local.standins.server import (
    ApiError,
    Call,
    Handle,
    StandIn,
    base_parser,
    handles,
    precondition_failure,
    run_forever,
    serve,
)

DEPLOY_ERROR_MARKER = "standin:deploy-error"
# wording of the "same revision deployed again" refusal; clients must not depend on it (tests vary it)
ALREADY_DEPLOYED = "revision {revision} is already deployed"
MAX_BUNDLE_BYTES = 15 * 1024 * 1024
PROXY_NAME = re.compile(r"^[A-Za-z0-9._-]+$")
PRODUCT_NAME = re.compile(r"^[A-Za-z0-9._\-$ %]+$")
MAX_PRODUCT_ATTRIBUTES = 18
SERVICE_ACCOUNT = re.compile(r"^[a-z0-9][a-z0-9._-]*@[a-z0-9-]+\.iam\.gserviceaccount\.com$")
TOKEN_AUTH = ("GoogleIDToken", "GoogleAccessToken")
TIME_UNITS_MS = {"second": 1000, "minute": 60_000, "hour": 3_600_000, "day": 86_400_000, "week": 604_800_000}
AGGREGATES = re.compile(r"^\s*(sum|avg|min|max|count|p50|p90|p95|p99)\((\w+)\)\s*$")


def now_ms() -> int:
    return int(time.time() * 1000)


def bad_request(field: str, description: str) -> dict[str, Any]:
    """A ``google.rpc.BadRequest`` detail with one field violation."""
    return {
        "@type": "type.googleapis.com/google.rpc.BadRequest",
        "fieldViolations": [{"field": field, "description": description}],
    }


def _bundle_error(violations: list[dict[str, str]]) -> ApiError:
    return ApiError(400, "bundle contains errors", "INVALID_ARGUMENT", [precondition_failure(violations)])


def _violation(kind: str, subject: str, description: str) -> dict[str, str]:
    return {"type": kind, "subject": subject, "description": description}


def _parse_xml(data: bytes, path: str, problems: list[dict[str, str]]) -> ET.Element | None:
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        problems.append(_violation("bundle.xml", path, "DTDs and entities are not allowed"))
        return None
    try:
        return ET.fromstring(data)  # noqa: S314 - DTDs rejected above; local developer input
    except ET.ParseError as exc:
        problems.append(_violation("bundle.xml", path, f"malformed XML: {exc}"))
        return None


def parse_bundle(data: bytes) -> dict[str, Any]:
    """What an import stores about a proxy bundle; raises 400 with every problem found."""
    if len(data) > MAX_BUNDLE_BYTES:
        raise _bundle_error(
            [_violation("bundle.size", "bundle", f"bundle is {len(data)} bytes; the limit is 15 MB")]
        )
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise _bundle_error([_violation("bundle.zip", "bundle", f"not a valid zip archive: {exc}")]) from None
    problems: list[dict[str, str]] = []
    files: dict[str, bytes] = {}
    with archive:
        for info in archive.infolist():
            name = info.filename
            if info.is_dir():
                continue
            if not name.startswith("apiproxy/") or ".." in posixpath.normpath(name).split("/"):
                problems.append(_violation("bundle.layout", name, "every file must be under apiproxy/"))
                continue
            files[name] = archive.read(info)
    xml: dict[str, ET.Element] = {}
    for name, content in files.items():
        if name.endswith(".xml") and not name.startswith("apiproxy/resources/"):
            root = _parse_xml(content, name, problems)
            if root is not None:
                xml[name] = root

    def section(folder: str, tag: str) -> dict[str, ET.Element]:
        found = {}
        for path, root in sorted(xml.items()):
            if posixpath.dirname(path) == f"apiproxy/{folder}".rstrip("/"):
                if folder and root.tag != tag:
                    problems.append(_violation("bundle.xml", path, f"root element must be <{tag}>"))
                    continue
                if root.tag == tag:
                    found[root.get("name") or posixpath.basename(path)[:-4]] = root
        return found

    bases = section("", "APIProxy")
    proxies = section("proxies", "ProxyEndpoint")
    targets = section("targets", "TargetEndpoint")
    policies = {
        root.get("name") or posixpath.basename(path)[:-4]: root
        for path, root in sorted(xml.items())
        if posixpath.dirname(path) == "apiproxy/policies"
    }
    if len(bases) != 1:
        problems.append(
            _violation(
                "bundle.layout",
                "apiproxy/",
                f"expected one base configuration apiproxy/<name>.xml with <APIProxy>, found {len(bases)}",
            )
        )
    base = next(iter(bases.values()), None)
    basepaths = []
    for name, endpoint in proxies.items():
        basepaths.append((endpoint.findtext("HTTPProxyConnection/BasePath") or "/").strip())
        for rule in endpoint.iter("RouteRule"):
            target = (rule.findtext("TargetEndpoint") or "").strip()
            if target and target not in targets:
                problems.append(
                    _violation(
                        "bundle.reference",
                        f"apiproxy/proxies/{name}.xml",
                        f'RouteRule "{rule.get("name")}" refers to unknown TargetEndpoint "{target}"',
                    )
                )
    for kind, group in (("proxies", proxies), ("targets", targets)):
        for name, endpoint in group.items():
            for step in endpoint.iter("Step"):
                policy = (step.findtext("Name") or "").strip()
                if policy and policy not in policies:
                    problems.append(
                        _violation(
                            "bundle.reference",
                            f"apiproxy/{kind}/{name}.xml",
                            f'Step refers to unknown policy "{policy}"',
                        )
                    )
    if problems:
        raise _bundle_error(problems)
    description = (base.findtext("Description") if base is not None else None) or ""
    needs_sa = any(
        root.find(f".//Authentication/{kind}") is not None for root in xml.values() for kind in TOKEN_AUTH
    )
    resources = sorted(
        f"{parts[2]}://{'/'.join(parts[3:])}"
        for parts in (n.split("/") for n in files)
        if len(parts) >= 4 and parts[1] == "resources"
    )
    return {
        "basepaths": basepaths,
        "proxies": sorted(proxies),
        "targets": sorted(targets),
        "policies": sorted(policies),
        "resources": resources,
        "description": description.strip(),
        "displayName": ((base.findtext("DisplayName") if base is not None else None) or "").strip(),
        "needsServiceAccount": needs_sa,
        "deployError": DEPLOY_ERROR_MARKER in description,
    }


def _segments(path: str) -> list[str]:
    return [s for s in path.strip().split("/") if s]


def paths_overlap(a: str, b: str) -> bool:
    """Same base path, segment by segment, a ``*`` segment matching any one."""
    sa, sb = _segments(a), _segments(b)
    return len(sa) == len(sb) and all(x == y or "*" in (x, y) for x, y in zip(sa, sb, strict=True))


def _number(value: float) -> str:
    return repr(float(round(value, 6)))


def _parse_time_range(value: str | None) -> tuple[int, int]:
    if not value or "~" not in value:
        raise ApiError(400, 'Invalid timeRange: expected "MM/DD/YYYY HH:MM~MM/DD/YYYY HH:MM"')
    start, end = value.split("~", 1)
    try:
        bounds = [datetime.strptime(s.strip(), "%m/%d/%Y %H:%M").replace(tzinfo=UTC) for s in (start, end)]
    except ValueError:
        raise ApiError(
            400, f'Invalid timeRange "{value}": expected "MM/DD/YYYY HH:MM~MM/DD/YYYY HH:MM"'
        ) from None
    return int(bounds[0].timestamp() * 1000), int(bounds[1].timestamp() * 1000)


def _bucket(ts: int, unit: str) -> int:
    if unit == "month":
        day = datetime.fromtimestamp(ts / 1000, UTC)
        return int(datetime(day.year, day.month, 1, tzinfo=UTC).timestamp() * 1000)
    size = TIME_UNITS_MS[unit]
    return ts - ts % size


def _aggregate(fn: str, values: list[float]) -> float:
    if not values:
        return 0.0
    if fn == "sum":
        return sum(values)
    if fn == "avg":
        return sum(values) / len(values)
    if fn == "min":
        return min(values)
    if fn == "max":
        return max(values)
    if fn == "count":
        return float(len(values))
    ordered = sorted(values)  # nearest-rank percentile
    rank = max(1, math.ceil(int(fn[1:]) / 100 * len(ordered)))
    return ordered[rank - 1]


class Apigee(StandIn):
    API = "apigee.v1"
    NAME = "apigee"

    def __init__(
        self,
        *,
        org: str = "local-org",
        envs: tuple[str, ...] = ("test", "prod"),
        deploy_delay_ms: int = 300,
        state_file: str | None = None,
        check_fields: bool = False,
    ) -> None:
        self.org = org
        self.envs = tuple(envs)
        self.deploy_delay_ms = deploy_delay_ms
        super().__init__(state_file=state_file, check_fields=check_fields)
        for env in self.envs:  # environments named on the command line exist even in an old state file
            self.state["environments"].setdefault(env, {"createdAt": now_ms()})
        self.extra_routes[("POST", "/_standin/apigee/stats")] = self._seed_stats
        self.extra_routes[("DELETE", "/_standin/apigee/stats")] = self._clear_stats

    def initial_state(self) -> dict[str, Any]:
        created = now_ms()
        return {
            "createdAt": created,
            "environments": {env: {"createdAt": created} for env in self.envs},
            "proxies": {},  # name -> {createdAt, lastModifiedAt, labels, lastRevision, revisions{}}
            "deployments": {},  # env -> proxy -> {revision, deployStartTime, serviceAccount}
            "analytics": [],  # seeded stats samples
            "apiproducts": {},  # name -> the product as the API answers it
        }

    # -- lookups --------------------------------------------------------------------------------

    def _org(self, name: str) -> None:
        if name.split("/")[1] != self.org:
            raise ApiError(404, f'organization "{name.split("/")[1]}" not found', "NOT_FOUND")

    def _env(self, name: str) -> str:
        self._org(name)
        env = name.split("/")[3]
        if env not in self.state["environments"]:
            raise ApiError(404, f'environment "{env}" not found in organization "{self.org}"', "NOT_FOUND")
        return env

    def _proxy(self, name: str) -> dict[str, Any]:
        proxy = self.state["proxies"].get(name)
        if proxy is None:
            raise ApiError(404, f'API proxy "{name}" not found in organization "{self.org}"', "NOT_FOUND")
        return proxy  # type: ignore[no-any-return]

    def _revision(self, proxy_name: str, revision: str) -> dict[str, Any]:
        rev = self._proxy(proxy_name)["revisions"].get(revision)
        if rev is None:
            raise ApiError(
                404,
                f'revision "{revision}" of API proxy "{proxy_name}" not found in organization "{self.org}"',
                "NOT_FOUND",
            )
        return rev  # type: ignore[no-any-return]

    def _revision_path(self, proxy: str, revision: str) -> str:
        return f"organizations/{self.org}/apis/{proxy}/revisions/{revision}"

    def _deployed(self, proxy: str) -> list[tuple[str, dict[str, Any]]]:
        return [(env, deps[proxy]) for env, deps in self.state["deployments"].items() if proxy in deps]

    # -- renderings -----------------------------------------------------------------------------

    def _revision_json(self, name: str, rev: dict[str, Any]) -> dict[str, Any]:
        out = {
            "name": name,
            "revision": rev["revision"],
            "basepaths": rev["basepaths"],
            "configurationVersion": {"majorVersion": 4, "minorVersion": 0},
            "createdAt": str(rev["createdAt"]),
            "lastModifiedAt": str(rev["lastModifiedAt"]),
            "entityMetaDataAsProperties": {
                "bundle_type": "zip",
                "subType": "Proxy",
                "createdAt": str(rev["createdAt"]),
                "lastModifiedAt": str(rev["lastModifiedAt"]),
            },
            "policies": rev["policies"],
            "proxies": rev["proxies"],
            "proxyEndpoints": rev["proxies"],
            "targets": rev["targets"],
            "targetEndpoints": rev["targets"],
            "type": "Application",
        }
        for key in ("description", "displayName", "resources"):
            if rev.get(key):
                out[key] = rev[key]
        return out

    def _proxy_json(self, name: str, revisions: bool = True, meta: bool = True) -> dict[str, Any]:
        proxy = self.state["proxies"][name]
        out: dict[str, Any] = {"name": name, "apiProxyType": "PROGRAMMABLE"}
        numbers = sorted(proxy["revisions"], key=int)
        if revisions:
            out["revision"] = numbers
            if numbers:
                out["latestRevisionId"] = numbers[-1]
        if proxy["labels"]:
            out["labels"] = proxy["labels"]
        if meta:
            out["metaData"] = {
                "createdAt": str(proxy["createdAt"]),
                "lastModifiedAt": str(proxy["lastModifiedAt"]),
                "subType": "Proxy",
            }
        return out

    def _deployment_json(self, env: str, proxy: str, dep: dict[str, Any]) -> dict[str, Any]:
        out = {
            "environment": env,
            "apiProxy": proxy,
            "revision": dep["revision"],
            "deployStartTime": str(dep["deployStartTime"]),
        }
        if dep.get("serviceAccount"):
            out["serviceAccount"] = f"projects/-/serviceAccounts/{dep['serviceAccount']}"
        return out

    def _list(self, items: list[tuple[str, str, dict[str, Any]]]) -> dict[str, Any]:
        deployments = [self._deployment_json(env, proxy, dep) for env, proxy, dep in items]
        return {"deployments": deployments} if deployments else {}

    def _all_deployments(self) -> list[tuple[str, str, dict[str, Any]]]:
        return [
            (env, proxy, dep)
            for env, deps in sorted(self.state["deployments"].items())
            for proxy, dep in sorted(deps.items())
        ]

    # -- conflicts ------------------------------------------------------------------------------

    def _owners(self, env: str, proxy: str, basepaths: list[str], since: int | None) -> list[dict[str, Any]]:
        """Route conflicts of ``basepaths`` (of ``proxy``, deployed at ``since`` or about to be)
        with other proxies' deployments in ``env`` that own the overlapping path (deployed earlier)."""
        conflicts = []
        for other, dep in sorted(self.state["deployments"].get(env, {}).items()):
            if other == proxy:
                continue
            if since is not None and (dep["deployStartTime"], other) > (since, proxy):
                continue  # deployed after us: the conflict is theirs
            other_rev = self.state["proxies"].get(other, {}).get("revisions", {}).get(dep["revision"])
            for path in basepaths:
                for owned in (other_rev or {}).get("basepaths", []):
                    if paths_overlap(path, owned):
                        conflicts.append(
                            {
                                "conflictingDeployment": {
                                    "apiProxy": other,
                                    "basepath": owned,
                                    "environment": env,
                                    "revision": dep["revision"],
                                },
                                "description": (
                                    f'base path "{path}" of API proxy "{proxy}" conflicts with the '
                                    f'existing deployment of "organizations/{self.org}/apis/{other}" '
                                    f'revision {dep["revision"]} in environment "{env}"'
                                ),
                                "environmentGroup": f"{env}-group",
                            }
                        )
        return conflicts

    # -- organizations / environments -----------------------------------------------------------

    @handles("GET", "apigee.organizations.get")
    def get_org(self, call: Call) -> dict[str, Any]:
        self._org(call.params["name"])
        created = str(self.state["createdAt"])
        return {
            "name": self.org,
            "projectId": self.org,
            "apigeeProjectId": f"{self.org}-apigee",
            "environments": sorted(self.state["environments"]),
            "runtimeType": "CLOUD",
            "subscriptionType": "PAID",
            "billingType": "PAYG",
            "state": "ACTIVE",
            "createdAt": created,
            "lastModifiedAt": created,
        }

    @handles("GET", "apigee.organizations.environments.get")
    def get_env(self, call: Call) -> dict[str, Any]:
        env = self._env(call.params["name"])
        created = str(self.state["environments"][env]["createdAt"])
        return {
            "name": env,
            "state": "ACTIVE",
            "deploymentType": "PROXY",
            "apiProxyType": "PROGRAMMABLE",
            "type": "COMPREHENSIVE",
            "createdAt": created,
            "lastModifiedAt": created,
        }

    # -- proxies --------------------------------------------------------------------------------

    def _read_bundle(self, call: Call) -> bytes:
        """The zip of an import: apis.create documents multipart/form-data with a ``file`` part
        (only updateApiProxyRevision also takes application/octet-stream)."""
        request = call.request
        if request.mimetype != "multipart/form-data":
            raise ApiError(
                400,
                f'unsupported Content-Type "{request.mimetype or "none"}": upload the bundle as '
                'multipart/form-data with the zip in the form field "file"',
                "INVALID_ARGUMENT",
                [bad_request("file", "the bundle must be a multipart/form-data file part")],
            )
        upload = request.files.get("file") or next(iter(request.files.values()), None)
        if upload is None:
            raise ApiError(
                400,
                'multipart body has no file part with the bundle (form field "file")',
                "INVALID_ARGUMENT",
                [bad_request("file", "missing")],
            )
        return upload.read()  # type: ignore[no-any-return]

    @handles("POST", "apigee.organizations.apis.create")
    def create_proxy(self, call: Call) -> dict[str, Any]:
        self._org(call.params["parent"])
        name, action = call.arg("name") or "", call.arg("action")
        if not PROXY_NAME.match(name):
            raise ApiError(400, f'invalid API proxy name "{name}": allowed characters are A-Za-z0-9._-')
        if action not in ("import", "validate"):
            raise ApiError(
                400, "the stand-in supports action=import and action=validate (bundle upload) only"
            )
        data = self._read_bundle(call)
        info = parse_bundle(data)
        stamp = now_ms()
        proxy = self.state["proxies"].get(name)
        number = str((proxy["lastRevision"] if proxy else 0) + 1)
        rev = {"revision": number, "createdAt": stamp, "lastModifiedAt": stamp, **info}
        if action == "validate":
            return self._revision_json(name, rev)
        if proxy is None:
            proxy = self.state["proxies"][name] = {
                "createdAt": stamp,
                "lastModifiedAt": stamp,
                "labels": {},
                "lastRevision": 0,
                "revisions": {},
            }
        rev["bundle"] = base64.b64encode(data).decode()
        proxy["revisions"][number] = rev
        proxy["lastRevision"] = int(number)
        proxy["lastModifiedAt"] = stamp
        self.changed()
        return self._revision_json(name, rev)

    @handles("GET", "apigee.organizations.apis.get")
    def get_proxy(self, call: Call) -> dict[str, Any]:
        self._org(call.params["name"])
        name = call.params["name"].split("/")[3]
        self._proxy(name)
        return self._proxy_json(name)

    @handles("GET", "apigee.organizations.apis.list")
    def list_proxies(self, call: Call) -> dict[str, Any]:
        self._org(call.params["parent"])
        proxies = [
            self._proxy_json(n, call.flag("includeRevisions"), call.flag("includeMetaData"))
            for n in sorted(self.state["proxies"])
        ]
        return {"proxies": proxies} if proxies else {}

    @handles("PATCH", "apigee.organizations.apis.patch")
    def patch_proxy(self, call: Call) -> dict[str, Any]:
        self._org(call.params["name"])
        name = call.params["name"].split("/")[3]
        proxy = self._proxy(name)
        mask = [p.strip() for p in (call.arg("updateMask") or "").split(",") if p.strip()]
        if not mask:
            raise ApiError(400, "updateMask is required")
        if any(p != "labels" for p in mask):
            raise ApiError(400, f"invalid updateMask {','.join(mask)!r}: only labels can be updated")
        body = call.json()
        labels = body.get("labels") or {} if isinstance(body, dict) else None
        if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
            raise ApiError(400, "labels must be a map of strings")
        proxy["labels"] = dict(labels)
        proxy["lastModifiedAt"] = now_ms()
        self.changed()
        return self._proxy_json(name)

    @handles("DELETE", "apigee.organizations.apis.delete")
    def delete_proxy(self, call: Call) -> dict[str, Any]:
        self._org(call.params["name"])
        name = call.params["name"].split("/")[3]
        self._proxy(name)
        deployed = self._deployed(name)
        if deployed:
            env, dep = deployed[0]
            raise ApiError(
                400,
                f'API proxy "{name}" revision {dep["revision"]} is deployed in environment "{env}"; '
                "undeploy it before deleting the API proxy",
                "FAILED_PRECONDITION",
            )
        out = self._proxy_json(name)
        del self.state["proxies"][name]
        self.changed()
        return out

    # -- revisions ------------------------------------------------------------------------------

    @handles("GET", "apigee.organizations.apis.revisions.get", "GoogleCloudApigeeV1ApiProxyRevision")
    def get_revision(self, call: Call) -> Any:
        self._org(call.params["name"])
        _, _, _, name, _, number = call.params["name"].split("/")
        rev = self._revision(name, number)
        fmt = call.arg("format")
        if fmt == "bundle":
            return Response(
                base64.b64decode(rev["bundle"]),
                content_type="application/octet-stream",
                headers={"Content-Disposition": f'attachment; filename="{name}_rev{number}.zip"'},
            )
        if fmt not in (None, "", "json"):
            raise ApiError(400, f'invalid format "{fmt}": use "bundle"')
        return self._revision_json(name, rev)

    @handles("DELETE", "apigee.organizations.apis.revisions.delete")
    def delete_revision(self, call: Call) -> dict[str, Any]:
        self._org(call.params["name"])
        _, _, _, name, _, number = call.params["name"].split("/")
        rev = self._revision(name, number)
        for env, dep in self._deployed(name):
            if dep["revision"] == number:
                raise ApiError(
                    400,
                    f"revision {self._revision_path(name, number)} is deployed in environment "
                    f'"{env}"; undeploy it before deleting it',
                    "FAILED_PRECONDITION",
                )
        out = self._revision_json(name, rev)
        del self.state["proxies"][name]["revisions"][number]
        self.changed()
        return out

    # -- deployment lists -------------------------------------------------------------------------

    @handles("GET", "apigee.organizations.deployments.list")
    def list_org_deployments(self, call: Call) -> dict[str, Any]:
        self._org(call.params["parent"])
        return {} if call.flag("sharedFlows") else self._list(self._all_deployments())

    @handles("GET", "apigee.organizations.environments.deployments.list")
    def list_env_deployments(self, call: Call) -> dict[str, Any]:
        env = self._env(call.params["parent"])
        if call.flag("sharedFlows"):
            return {}
        return self._list([d for d in self._all_deployments() if d[0] == env])

    @handles("GET", "apigee.organizations.apis.deployments.list")
    def list_proxy_deployments(self, call: Call) -> dict[str, Any]:
        self._org(call.params["parent"])
        name = call.params["parent"].split("/")[3]
        self._proxy(name)
        return self._list([d for d in self._all_deployments() if d[1] == name])

    @handles("GET", "apigee.organizations.apis.revisions.deployments.list")
    def list_revision_deployments(self, call: Call) -> dict[str, Any]:
        self._org(call.params["parent"])
        _, _, _, name, _, number = call.params["parent"].split("/")
        self._revision(name, number)
        return self._list([d for d in self._all_deployments() if d[1] == name and d[2]["revision"] == number])

    @handles("GET", "apigee.organizations.environments.apis.deployments.list")
    def list_env_proxy_deployments(self, call: Call) -> dict[str, Any]:
        env = self._env(call.params["parent"])
        name = call.params["parent"].split("/")[5]
        self._proxy(name)
        return self._list([d for d in self._all_deployments() if d[0] == env and d[1] == name])

    # -- deploy / status / undeploy ---------------------------------------------------------------

    def _target(self, call: Call) -> tuple[str, str, str, dict[str, Any]]:
        env = self._env(call.params["name"])
        parts = call.params["name"].split("/")
        name, number = parts[5], parts[7]
        return env, name, number, self._revision(name, number)

    @handles("POST", "apigee.organizations.environments.apis.revisions.deploy")
    def deploy(self, call: Call) -> dict[str, Any]:
        env, name, number, rev = self._target(call)
        override, account = call.flag("override"), call.arg("serviceAccount") or ""
        call.flag("sequencedRollout")  # accepted; routing changes are immediate here
        if account and not SERVICE_ACCOUNT.match(account):
            raise ApiError(
                400,
                f'invalid service account "{account}": the format must be '
                "{ACCOUNT_ID}@{PROJECT}.iam.gserviceaccount.com",
            )
        current = self.state["deployments"].get(env, {}).get(name)
        subject = f"organizations/{self.org}/environments/{env}/apis/{name}/revisions/{number}"
        if current and current["revision"] == number:
            raise ApiError(
                400,
                ALREADY_DEPLOYED.format(revision=self._revision_path(name, number)),
                "FAILED_PRECONDITION",
            )
        violations = []
        if current and not override:
            violations.append(
                _violation(
                    "CONFLICTING_DEPLOYMENT",
                    f"organizations/{self.org}/environments/{env}/apis/{name}/revisions/{current['revision']}",
                    "Only one revision can be deployed at a time, use the override flag to replace.",
                )
            )
        if rev["needsServiceAccount"] and not account:
            violations.append(
                _violation(
                    "MISSING_SERVICE_ACCOUNT",
                    subject,
                    f'Deployment of "{subject}" requires a service account identity, but one was not '
                    "provided with the request.",
                )
            )
        if violations:
            raise ApiError(
                400,
                "deployment validations failed",
                "FAILED_PRECONDITION",
                [
                    precondition_failure(violations),
                    {"@type": "type.googleapis.com/google.rpc.RequestInfo", "requestId": uuid.uuid4().hex},
                ],
            )
        dep = {"revision": number, "deployStartTime": now_ms(), "serviceAccount": account}
        self.state["deployments"].setdefault(env, {})[name] = dep
        self.changed()
        return self._deployment_json(env, name, dep)

    @handles("GET", "apigee.organizations.environments.apis.revisions.getDeployments")
    def deployment_status(self, call: Call) -> dict[str, Any]:
        env, name, number, rev = self._target(call)
        dep = self.state["deployments"].get(env, {}).get(name)
        if not dep or dep["revision"] != number:
            raise ApiError(
                404,
                f'revision {number} of API proxy "{name}" is not deployed in environment "{env}"',
                "NOT_FOUND",
            )
        out = self._deployment_json(env, name, dep)
        conflicts = self._owners(env, name, rev["basepaths"], dep["deployStartTime"])
        if rev["deployError"]:
            out["state"] = "ERROR"
            out["errors"] = [
                {
                    "code": 9,
                    "message": f"revision {self._revision_path(name, number)} failed to load in the runtime "
                    f"of environment {env} ({DEPLOY_ERROR_MARKER}: {rev['description']})",
                }
            ]
        elif now_ms() - dep["deployStartTime"] < self.deploy_delay_ms:
            out["state"] = "PROGRESSING"
        else:
            out["state"] = "READY"
            conflicted = {c["conflictingDeployment"]["basepath"] for c in conflicts}
            routed = [b for b in rev["basepaths"] if not any(paths_overlap(b, c) for c in conflicted)]
            out["instances"] = [
                {
                    "instance": f"{self.org}-instance",
                    "deployedRevisions": [{"revision": number, "percentage": 100}],
                    "deployedRoutes": [
                        {"basepath": b, "envgroup": f"{env}-group", "environment": env, "percentage": 100}
                        for b in routed
                    ],
                }
            ]
        if conflicts:
            out["routeConflicts"] = conflicts
        return out

    @handles("DELETE", "apigee.organizations.environments.apis.revisions.undeploy")
    def undeploy(self, call: Call) -> dict[str, Any]:
        env, name, number, _ = self._target(call)
        call.flag("sequencedRollout")
        deps = self.state["deployments"].get(env, {})
        if name not in deps or deps[name]["revision"] != number:
            raise ApiError(
                404,
                f'revision {number} of API proxy "{name}" is not deployed in environment "{env}"',
                "NOT_FOUND",
            )
        del deps[name]
        self.changed()
        return {}

    @handles(
        "POST", "apigee.organizations.environments.apis.revisions.deployments.generateDeployChangeReport"
    )
    def change_report(self, call: Call) -> dict[str, Any]:
        env, name, number, rev = self._target(call)
        override = call.flag("override")
        current = self.state["deployments"].get(env, {}).get(name)
        deployed = current["revision"] if current else None
        out: dict[str, Any] = {}
        if deployed and deployed != number and not override:
            out["validationErrors"] = {
                "violations": [
                    _violation(
                        "CONFLICTING_DEPLOYMENT",
                        f"organizations/{self.org}/environments/{env}/apis/{name}/revisions/{deployed}",
                        "Only one revision can be deployed at a time, use the override flag to replace.",
                    )
                ]
            }
        group = f"{env}-group"
        old_paths = self.state["proxies"][name]["revisions"].get(deployed, {}).get("basepaths", [])

        def at(path: str, revision: str | None) -> dict[str, Any]:
            return {"apiProxy": name, "basepath": path, "environment": env, "revision": revision}

        changes = []
        if deployed != number:
            for path in rev["basepaths"]:
                moving = path in old_paths
                change = {
                    "environmentGroup": group,
                    "toDeployment": at(path, number),
                    "description": f'base path "{path}" '
                    + (f"moves to revision {number}" if moving else f"will be routed to revision {number}"),
                    "shouldSequenceRollout": False,
                }
                if moving:
                    change["fromDeployment"] = at(path, deployed)
                changes.append(change)
            changes += [
                {
                    "environmentGroup": group,
                    "fromDeployment": at(path, deployed),
                    "description": f'base path "{path}" will no longer be routed',
                    "shouldSequenceRollout": False,
                }
                for path in old_paths
                if path not in rev["basepaths"]
            ]
        if changes:
            out["routingChanges"] = changes
        conflicts = self._owners(env, name, rev["basepaths"], None)
        if conflicts:
            out["routingConflicts"] = conflicts
        return out

    # -- API products -----------------------------------------------------------------------------
    # No upsert and no etag: create refuses an existing name (409), update (PUT) replaces the whole
    # product. Bodies are checked against what the API refuses: a JSON content type, a valid name,
    # operation configs with an apiSource and at most one resource/method pair each, approvalType
    # auto|manual, at most 18 attributes, environments that exist, quota time units it knows.

    def _product_name(self, name: str) -> str:
        self._org(name)
        return name.split("/")[3]

    def _product(self, name: str) -> dict[str, Any]:
        product = self.state["apiproducts"].get(name)
        if product is None:
            raise ApiError(404, f'API product "{name}" not found in organization "{self.org}"', "NOT_FOUND")
        return product  # type: ignore[no-any-return]

    def _product_body(self, call: Call, name: str | None) -> dict[str, Any]:
        if call.request.mimetype != "application/json":
            raise ApiError(
                400,
                f'unsupported Content-Type "{call.request.mimetype or "none"}": send the product as JSON',
                "INVALID_ARGUMENT",
            )
        body = call.json()
        if not isinstance(body, dict):
            raise ApiError(400, "Invalid JSON payload received. Expected an object.", "INVALID_ARGUMENT")
        problems = self.api.check_fields("GoogleCloudApigeeV1ApiProduct", body)
        if problems:
            raise ApiError(
                400,
                f"Invalid JSON payload received. Unknown name: {problems}",
                "INVALID_ARGUMENT",
                [bad_request(p.split(":", 1)[0].strip(), p) for p in problems],
            )
        given = str(body.get("name") or "")
        if name is not None and given and given != name:
            raise ApiError(400, f'the name of API product "{name}" cannot be changed', "INVALID_ARGUMENT")
        given = given or (name or "")
        if not PRODUCT_NAME.match(given):
            raise ApiError(
                400,
                f'invalid API product name "{given}": allowed characters are A-Za-z0-9._-$ %',
                "INVALID_ARGUMENT",
                [bad_request("name", "invalid")],
            )
        approval = body.get("approvalType")
        if approval not in (None, "", "auto", "manual"):
            raise ApiError(
                400,
                f'invalid approvalType "{approval}": use auto or manual',
                "INVALID_ARGUMENT",
                [bad_request("approvalType", "must be auto or manual")],
            )
        attributes = body.get("attributes") or []
        if not isinstance(attributes, list) or not all(
            isinstance(a, dict) and isinstance(a.get("name"), str) and isinstance(a.get("value", ""), str)
            for a in attributes
        ):
            raise ApiError(
                400,
                "attributes must be a list of {name, value}",
                "INVALID_ARGUMENT",
                [bad_request("attributes", "invalid")],
            )
        if len(attributes) > MAX_PRODUCT_ATTRIBUTES:
            raise ApiError(
                400,
                f"API product can have at most {MAX_PRODUCT_ATTRIBUTES} attributes, got {len(attributes)}",
                "INVALID_ARGUMENT",
                [bad_request("attributes", f"at most {MAX_PRODUCT_ATTRIBUTES}")],
            )
        for env in body.get("environments") or []:
            if env not in self.state["environments"]:
                raise ApiError(
                    400,
                    f'environment "{env}" not found in organization "{self.org}"',
                    "INVALID_ARGUMENT",
                    [bad_request("environments", f"unknown {env}")],
                )
        group = body.get("operationGroup")
        if group is not None:
            configs = group.get("operationConfigs") if isinstance(group, dict) else None
            if not isinstance(configs, list):
                raise ApiError(
                    400,
                    "operationGroup.operationConfigs is required",
                    "INVALID_ARGUMENT",
                    [bad_request("operationGroup.operationConfigs", "required")],
                )
            for i, config in enumerate(configs):
                where = f"operationGroup.operationConfigs[{i}]"
                if not isinstance(config, dict) or not config.get("apiSource"):
                    raise ApiError(
                        400,
                        f"{where}.apiSource is required",
                        "INVALID_ARGUMENT",
                        [bad_request(f"{where}.apiSource", "required")],
                    )
                operations = config.get("operations") or []
                if len(operations) > 1:
                    raise ApiError(
                        400,
                        f"{where}: only a single resource/method pair is supported per operation config",
                        "INVALID_ARGUMENT",
                        [bad_request(f"{where}.operations", "at most one")],
                    )
                for op in operations:
                    if not isinstance(op, dict) or not str(op.get("resource") or "").startswith("/"):
                        raise ApiError(
                            400,
                            f"{where}.operations[].resource is required and starts with /",
                            "INVALID_ARGUMENT",
                            [bad_request(f"{where}.operations.resource", "invalid")],
                        )
                quota = config.get("quota")
                if quota is not None:
                    unit = quota.get("timeUnit") if isinstance(quota, dict) else None
                    if (
                        not isinstance(quota, dict)
                        or not str(quota.get("limit", "")).isdigit()
                        or not str(quota.get("interval", "")).isdigit()
                        or unit not in (None, "minute", "hour", "day", "month")
                    ):
                        raise ApiError(
                            400,
                            f"{where}.quota needs limit, interval and a time unit of "
                            "minute, hour, day or month",
                            "INVALID_ARGUMENT",
                            [bad_request(f"{where}.quota", "invalid")],
                        )
        out = {k: v for k, v in body.items() if k not in ("createdAt", "lastModifiedAt")}
        out["name"] = given
        return out

    @handles("POST", "apigee.organizations.apiproducts.create")
    def create_product(self, call: Call) -> dict[str, Any]:
        self._org(call.params["parent"])
        product = self._product_body(call, None)
        if product["name"] in self.state["apiproducts"]:
            raise ApiError(409, f'API product "{product["name"]}" already exists', "ALREADY_EXISTS")
        stamp = str(now_ms())
        product["createdAt"] = product["lastModifiedAt"] = stamp
        self.state["apiproducts"][product["name"]] = product
        self.changed()
        return dict(product)

    @handles("GET", "apigee.organizations.apiproducts.get")
    def get_product(self, call: Call) -> dict[str, Any]:
        return dict(self._product(self._product_name(call.params["name"])))

    @handles("PUT", "apigee.organizations.apiproducts.update")
    def update_product(self, call: Call) -> dict[str, Any]:
        name = self._product_name(call.params["name"])
        old = self._product(name)
        product = self._product_body(call, name)
        product["createdAt"], product["lastModifiedAt"] = old["createdAt"], str(now_ms())
        self.state["apiproducts"][name] = product
        self.changed()
        return dict(product)

    @handles("DELETE", "apigee.organizations.apiproducts.delete")
    def delete_product(self, call: Call) -> dict[str, Any]:
        name = self._product_name(call.params["name"])
        out = dict(self._product(name))
        del self.state["apiproducts"][name]
        self.changed()
        return out

    @handles("GET", "apigee.organizations.apiproducts.list")
    def list_products(self, call: Call) -> dict[str, Any]:
        self._org(call.params["parent"])
        try:
            count = int(call.arg("count") or 1000)
        except ValueError:
            raise ApiError(400, "Invalid count", "INVALID_ARGUMENT") from None
        if not 1 <= count <= 1000:
            raise ApiError(400, "count must be between 1 and 1000", "INVALID_ARGUMENT")
        names = sorted(self.state["apiproducts"])
        start = call.arg("startKey")
        if start:
            names = [n for n in names if n >= start]  # startKey is inclusive
        attr, value = call.arg("attributename"), call.arg("attributevalue")
        if attr:
            names = [
                n
                for n in names
                if any(
                    a.get("name") == attr and (value is None or a.get("value") == value)
                    for a in self.state["apiproducts"][n].get("attributes") or []
                )
            ]
        names = names[:count]
        if call.flag("expand"):
            found = [dict(self.state["apiproducts"][n]) for n in names]
        else:
            found = [{"name": n} for n in names]
        return {"apiProduct": found} if found else {}

    @handles("POST", "apigee.organizations.apiproducts.attributes")
    def replace_product_attributes(self, call: Call) -> dict[str, Any]:
        name = self._product_name(call.params["name"])
        product = self._product(name)
        body = call.json()
        attributes = body.get("attribute") if isinstance(body, dict) else None
        if not isinstance(attributes, list) or not all(
            isinstance(a, dict) and isinstance(a.get("name"), str) for a in attributes
        ):
            raise ApiError(400, "attribute must be a list of {name, value}", "INVALID_ARGUMENT")
        if len(attributes) > MAX_PRODUCT_ATTRIBUTES:
            raise ApiError(
                400, f"API product can have at most {MAX_PRODUCT_ATTRIBUTES} attributes", "INVALID_ARGUMENT"
            )
        product["attributes"] = [{"name": a["name"], "value": str(a.get("value", ""))} for a in attributes]
        product["lastModifiedAt"] = str(now_ms())
        self.changed()
        return {"attribute": product["attributes"]}

    @handles("GET", "apigee.organizations.apiproducts.attributes.list")
    def list_product_attributes(self, call: Call) -> dict[str, Any]:
        product = self._product(self._product_name(call.params["parent"]))
        attributes = product.get("attributes") or []
        return {"attribute": attributes} if attributes else {}

    def _attribute(self, call_name: str) -> tuple[dict[str, Any], str]:
        self._org(call_name)
        parts = call_name.split("/")
        return self._product(parts[3]), parts[5]

    @handles("GET", "apigee.organizations.apiproducts.attributes.get")
    def get_product_attribute(self, call: Call) -> dict[str, Any]:
        product, key = self._attribute(call.params["name"])
        for a in product.get("attributes") or []:
            if a.get("name") == key:
                return dict(a)
        raise ApiError(404, f'attribute "{key}" not found', "NOT_FOUND")

    @handles("POST", "apigee.organizations.apiproducts.attributes.updateApiProductAttribute")
    def set_product_attribute(self, call: Call) -> dict[str, Any]:
        product, key = self._attribute(call.params["name"])
        body = call.json()
        value = body.get("value") if isinstance(body, dict) else None
        if not isinstance(value, str):
            raise ApiError(400, "value is required", "INVALID_ARGUMENT")
        attributes = product.setdefault("attributes", [])
        for a in attributes:
            if a.get("name") == key:
                a["value"] = value
                break
        else:
            if len(attributes) >= MAX_PRODUCT_ATTRIBUTES:
                raise ApiError(
                    400,
                    f"API product can have at most {MAX_PRODUCT_ATTRIBUTES} attributes",
                    "INVALID_ARGUMENT",
                )
            attributes.append({"name": key, "value": value})
        product["lastModifiedAt"] = str(now_ms())
        self.changed()
        return {"name": key, "value": value}

    @handles("DELETE", "apigee.organizations.apiproducts.attributes.delete")
    def delete_product_attribute(self, call: Call) -> dict[str, Any]:
        product, key = self._attribute(call.params["name"])
        attributes = product.get("attributes") or []
        for i, a in enumerate(attributes):
            if a.get("name") == key:
                del attributes[i]
                self.changed()
                return dict(a)
        raise ApiError(404, f'attribute "{key}" not found', "NOT_FOUND")

    # -- analytics --------------------------------------------------------------------------------

    def _seed_stats(self, request: Request) -> dict[str, Any]:
        body = request.get_json(silent=True)
        records = body if isinstance(body, list) else [body]
        added = []
        for record in records:
            if not isinstance(record, dict) or not isinstance(record.get("metrics"), dict):
                raise ApiError(400, 'each stats record needs "metrics": {"total_response_time": 120, ...}')
            env = record.get("environment") or self.envs[0]
            if env not in self.state["environments"]:
                raise ApiError(400, f'unknown environment "{env}"')
            dims = dict(record.get("dimensions") or {})
            if record.get("proxy"):
                dims["apiproxy"] = record["proxy"]
            metrics = {k: float(v) for k, v in record["metrics"].items()}
            added.append(
                {
                    "environment": env,
                    "timestamp": int(record.get("timestamp") or now_ms()),
                    "dimensions": dims,
                    "metrics": metrics,
                }
            )
        self.state["analytics"].extend(added)
        self.changed()
        return {"added": len(added), "total": len(self.state["analytics"])}

    def _clear_stats(self, request: Request) -> dict[str, Any]:
        self.state["analytics"] = []
        self.changed()
        return {}

    @handles("GET", "apigee.organizations.environments.stats.get")
    def stats(self, call: Call) -> dict[str, Any]:
        env = self._env(call.params["name"])
        dims = [d for d in call.params["name"].split("/", 5)[5].split(",") if d.strip()]
        selects = [s for s in (call.arg("select") or "").split(",") if s.strip()]
        if not selects:
            raise ApiError(400, "select is required, e.g. select=sum(message_count)")
        parsed = []
        for item in selects:
            found = AGGREGATES.match(item)
            if not found:
                raise ApiError(
                    400, f'invalid select "{item}": expected fn(metric), fn one of sum avg min max p95 ...'
                )
            parsed.append((item.strip(), found.group(1), found.group(2)))
        start, end = _parse_time_range(call.arg("timeRange"))
        unit = call.arg("timeUnit")
        if unit and unit not in TIME_UNITS_MS and unit != "month":
            raise ApiError(400, f'invalid timeUnit "{unit}"')
        ascending = call.flag("tsAscending")
        samples = [
            s
            for s in self.state["analytics"]
            if s["environment"] == env and start <= s["timestamp"] < end + 60_000
        ]
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
        for sample in samples:
            groups[tuple(str(sample["dimensions"].get(d, "(not set)")) for d in dims)].append(sample)

        def metrics(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
            out = []
            for label, fn, metric in parsed:
                if unit:
                    buckets: dict[int, list[float]] = defaultdict(list)
                    for row in rows:
                        if metric in row["metrics"] or metric == "message_count":
                            buckets[_bucket(row["timestamp"], unit)].append(row["metrics"].get(metric, 1.0))
                    values: list[Any] = [
                        {"timestamp": ts, "value": _number(_aggregate(fn, buckets[ts]))}
                        for ts in sorted(buckets, reverse=not ascending)
                    ]
                else:
                    picked = [
                        r["metrics"].get(metric, 1.0)
                        for r in rows
                        if metric in r["metrics"] or metric == "message_count"
                    ]
                    values = [_number(_aggregate(fn, picked))]
                out.append({"name": label, "values": values})
            return out

        environment: dict[str, Any] = {"name": env}
        if dims:
            environment["dimensions"] = [
                {"name": ",".join(key), "individualNames": list(key), "metrics": metrics(rows)}
                for key, rows in sorted(groups.items())
            ]
        else:
            environment["metrics"] = metrics(samples)
        return {
            "environments": [environment],
            "metaData": {"errors": [], "notices": ["Source:stand-in", f"query served by:{uuid.uuid4()}"]},
        }


def start(port: int = 0, **opts: Any) -> Handle:
    """Serve an :class:`Apigee` stand-in in this process (``opts`` as its constructor takes)."""
    return serve(Apigee(**opts), port)


def main(argv: list[str] | None = None) -> None:
    parser = base_parser("Apigee management API v1 stand-in")
    parser.add_argument("--org", default="local-org", help="the one organization served")
    parser.add_argument(
        "--env", action="append", dest="envs", help="environment (repeat); default test, prod"
    )
    parser.add_argument("--deploy-delay-ms", type=int, default=300, help="PROGRESSING before READY")
    args = parser.parse_args(argv)
    standin = Apigee(
        org=args.org,
        envs=tuple(args.envs or ("test", "prod")),
        deploy_delay_ms=args.deploy_delay_ms,
        state_file=args.state_file,
        check_fields=args.check_fields,
    )
    run_forever(standin, args.port)


if __name__ == "__main__":
    main(sys.argv[1:])
