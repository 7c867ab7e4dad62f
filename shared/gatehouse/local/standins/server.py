"""The HTTP base every stand-in runs on: discovery routing, Google error bodies, stats, faults.

Production clients talk to a stand-in exactly as to Google (same client code, only the endpoint
differs), so the base speaks Google's REST wire format: JSON bodies, ``google.rpc.Status`` errors
``{"error": {"code", "message", "status", "details"}}``. Only methods of the API's discovery
document can be registered; every other API path answers 404.

Test hooks live under ``/_standin/`` (never counted, never faulted):

- ``GET /_standin/health``: 200 when serving.
- ``GET /_standin/stats``: ``{"calls": {"POST /v1/organizations/{organizationsId}/apis": 3}, "methods":
  {"apigee.organizations.apis.create": 3}, "total": 3}``; ``POST /_standin/stats/reset`` clears it.
- ``POST /_standin/faults`` ``{"latency_ms": 200, "error_rate": 0.5, "statuses": [503, 429],
  "routes": ["apis.create", "/deployments"], "seed": 1}``: matching calls (``routes`` entries are
  method ids or substrings of the method id or request path; all calls if absent) are delayed and
  fail at random with a ``google.rpc.Status`` (429 carries ``Retry-After: 1``); ``"times": N``
  fails at most N calls. ``"phase": "after"`` injects after the handler ran: the call takes
  effect (a write commits), then its answer is delayed by ``latency_ms`` (a client with a shorter
  timeout gives up) and, if picked, replaced by the error (a lost response).
  ``DELETE /_standin/faults`` clears them.
- ``GET /_standin/state``: the stand-in's state as JSON (for debugging).

Werkzeug (already installed with Flask) serves threads on 127.0.0.1 only. One lock guards state,
stats and faults; handlers run under it, so they need no locking of their own.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import json
import os
import random
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import HTTPException
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from gatehouse.local.standins.discovery import Discovery, Method

STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    412: "FAILED_PRECONDITION",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
MAX_BODY = 64 * 1024 * 1024


class ApiError(Exception):
    """Raised by handlers; rendered as a ``google.rpc.Status`` error body."""

    def __init__(self, code: int, message: str, status: str | None = None, details: list[Any] | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status or STATUS_NAMES.get(code, "UNKNOWN")
        self.details = details or []


def precondition_failure(violations: Iterable[dict[str, str]]) -> dict[str, Any]:
    """A ``google.rpc.PreconditionFailure`` detail."""
    return {"@type": "type.googleapis.com/google.rpc.PreconditionFailure", "violations": list(violations)}


def error_response(error: ApiError, headers: dict[str, str] | None = None) -> Response:
    body: dict[str, Any] = {"code": error.code, "message": error.message, "status": error.status}
    if error.details:
        body["details"] = error.details
    return json_response({"error": body}, error.code, headers)


def json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(obj, indent=2) + "\n",
        status=status,
        headers=headers,
        content_type="application/json; charset=UTF-8",
    )


def handles(
    verb: str, method_id: str, json_schema: str | None = None
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Mark a stand-in method as the handler of discovery method ``method_id`` (checked at start-up).
    ``json_schema`` names the schema of its JSON answer where the document declares an HttpBody."""

    def mark(fn: Callable[..., Any]) -> Callable[..., Any]:
        fn._standin_route = (verb, method_id, json_schema)  # type: ignore[attr-defined]
        return fn

    return mark


@dataclass
class Call:
    """One matched API request, as a handler sees it."""

    method: Method
    params: dict[str, str]  # path parameters: {"name": "organizations/o/apis/a"}
    query: MultiDict[str, str]
    request: Request
    _json: Any = field(default=None, init=False)

    def arg(self, name: str, default: str | None = None) -> str | None:
        return self.query.get(name, default)

    def flag(self, name: str) -> bool:
        value = (self.query.get(name) or "").lower()
        if value not in ("", "true", "false", "1", "0"):
            raise ApiError(400, f"Invalid value at '{name}' (TYPE_BOOL), \"{value}\"")
        return value in ("true", "1")

    def json(self) -> Any:
        """The JSON body (``{}`` if empty); 400 if it is not JSON."""
        if self._json is None:
            raw = self.request.get_data(cache=True)
            try:
                self._json = json.loads(raw) if raw.strip() else {}
            except ValueError as exc:
                raise ApiError(400, f"Invalid JSON payload received. {exc}") from None
        return self._json


def page_of(
    call: Call, items: list[Any], field: str, *, default_size: int = 100, max_size: int = 1000
) -> dict[str, Any]:
    """One page of ``items`` as Google list methods answer: ``{field: [...], "nextPageToken"}``
    (``pageSize``/``pageToken``; the token is an opaque base64 offset; an empty page omits ``field``)."""
    try:
        size = int(call.arg("pageSize") or 0)
        token = call.arg("pageToken") or ""
        offset = int(base64.urlsafe_b64decode(token.encode()).decode()) if token else 0
    except (ValueError, binascii.Error):
        raise ApiError(400, "Invalid pageSize or pageToken") from None
    size = default_size if size <= 0 else min(size, max_size)
    page = items[offset : offset + size]
    out: dict[str, Any] = {field: page} if page else {}
    if offset + size < len(items):
        out["nextPageToken"] = base64.urlsafe_b64encode(str(offset + size).encode()).decode()
    return out


class Faults:
    """What ``POST /_standin/faults`` configures, shared by every stand-in: added latency, a share of
    calls answered with an error status (optionally only for some routes, and at most ``times`` calls),
    reproducible with ``seed``; before the call takes effect or (``phase`` "after") once it has.
    Callers hold their own lock around :meth:`pick`."""

    def __init__(self) -> None:
        self.spec: dict[str, Any] | None = None
        self.rng = random.Random()

    def configure(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Validate and install ``spec``; raises ValueError with what is wrong."""
        latency, rate = spec.get("latency_ms", 0), spec.get("error_rate", 0.0)
        statuses, routes, times = spec.get("statuses") or [503], spec.get("routes"), spec.get("times")
        phase = spec.get("phase", "before")
        if phase not in ("before", "after"):
            raise ValueError('phase must be "before" (the call has no effect) or "after" (it has)')
        if not isinstance(latency, int) or latency < 0:
            raise ValueError("latency_ms must be a non-negative integer")
        if not isinstance(rate, int | float) or not 0 <= rate <= 1:
            raise ValueError("error_rate must be a number in [0, 1]")
        if not all(isinstance(s, int) and 400 <= s <= 599 for s in statuses):
            raise ValueError("statuses must be HTTP error codes (4xx/5xx)")
        if routes is not None and not (isinstance(routes, list) and all(isinstance(r, str) for r in routes)):
            raise ValueError("routes must be a list of strings")
        if times is not None and (not isinstance(times, int) or times < 0):
            raise ValueError("times must be a non-negative integer")
        self.spec = {
            "latency_ms": latency,
            "error_rate": float(rate),
            "statuses": statuses,
            "routes": routes,
            "times": times,
            "phase": phase,
        }
        if "seed" in spec:
            self.rng.seed(spec["seed"])
        return dict(self.spec)

    def clear(self) -> None:
        self.spec = None

    @property
    def after(self) -> bool:
        """Faults are injected once the call has taken effect."""
        return bool(self.spec and self.spec.get("phase") == "after")

    def pick(self, *names: str) -> tuple[float, int | None]:
        """The delay for a call known by ``names`` (route template, path, method id) and the error
        status to answer with, if this call is one of the injected failures."""
        spec = self.spec
        if not spec:
            return 0.0, None
        routes = spec["routes"]
        if routes and not any(r in name for r in routes for name in names):
            return 0.0, None
        delay = spec["latency_ms"] / 1000
        if spec["times"] is not None and spec["times"] <= 0:
            return delay, None
        if not (spec["error_rate"] and self.rng.random() < spec["error_rate"]):
            return delay, None
        if spec["times"] is not None:
            spec["times"] -= 1
        return delay, int(self.rng.choice(spec["statuses"]))


class StandIn:
    """Base of one stand-in. Subclasses set ``API`` and mark handlers with :func:`handles`."""

    API: ClassVar[str]
    NAME: ClassVar[str]
    # further discovery documents this stand-in serves methods of (IAM Credentials beside IAM)
    EXTRA_APIS: ClassVar[tuple[str, ...]] = ()

    def __init__(self, *, state_file: str | None = None, check_fields: bool = False) -> None:
        self.api = Discovery(self.API)
        self.extra_apis = [Discovery(api) for api in self.EXTRA_APIS]
        self.lock = threading.RLock()
        self.state_file = Path(state_file) if state_file else None
        self.check = check_fields
        self.calls: Counter[str] = Counter()
        self.method_calls: Counter[str] = Counter()
        self.faults = Faults()
        self.handlers: dict[str, Callable[[Call], Any]] = {}
        self.json_schemas: dict[str, str] = {}
        self.extra_routes: dict[tuple[str, str], Callable[[Request], Any]] = {}
        for attr in dir(type(self)):
            route = getattr(getattr(type(self), attr), "_standin_route", None)
            if route:
                self.register(route[0], route[1], getattr(self, attr), route[2])
        self.state: dict[str, Any] = self.initial_state()
        if self.state_file and self.state_file.exists():
            self.state.update(json.loads(self.state_file.read_text(encoding="utf-8")))

    # -- registration / state ---------------------------------------------------------------

    def register(
        self, verb: str, method_id: str, fn: Callable[[Call], Any], json_schema: str | None = None
    ) -> None:
        """Serve discovery method ``method_id``; raises if the document lacks it (or the schema) or
        its verb differs."""
        method = self.api_of(method_id).method(method_id)
        if method.http_method != verb:
            raise ValueError(f"{method_id} is {method.http_method} in {self.API}, not {verb}")
        if json_schema:
            self.api_of(method_id).schema(json_schema)
            self.json_schemas[method_id] = json_schema
        self.handlers[method_id] = fn

    def api_of(self, method_id: str) -> Discovery:
        """The discovery document that defines ``method_id``."""
        for api in self.extra_apis:
            if method_id in api.methods:
                return api
        return self.api

    def match_route(self, verb: str, path: str) -> tuple[Method, dict[str, str]] | None:
        found = self.api.match(verb, path)
        if found is not None and found[0].id in self.handlers:
            return found
        for api in self.extra_apis:
            extra = api.match(verb, path)
            if extra is not None and extra[0].id in self.handlers:
                return extra
        return found

    def response_schema(self, method: Method) -> str:
        """The schema a JSON answer of ``method`` must follow."""
        return self.json_schemas.get(method.id) or method.response or "GoogleProtobufEmpty"

    def initial_state(self) -> dict[str, Any]:
        return {}

    def changed(self) -> None:
        """Persist the state (call after every change, under the lock)."""
        if not self.state_file:
            return
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.state_file.parent, prefix=self.state_file.name, suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(self.state, out)
        os.replace(tmp, self.state_file)

    def close(self) -> None:
        """Release resources when the server stops (subclasses flush background work)."""

    # -- WSGI ---------------------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        request.max_content_length = MAX_BODY
        try:
            response = self.dispatch(request)
        except ApiError as exc:
            response = error_response(exc)
        except HTTPException as exc:
            response = error_response(ApiError(exc.code or 500, exc.description or exc.name))
        finally:
            request.close()  # multipart uploads live in temporary files
        return response(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        verb, path = request.method, request.path
        if path.startswith("/_standin/"):
            return self._internal(verb, path, request)
        found = self.match_route(verb, path)
        with self.lock:
            key = f"{verb} {found[0].route}" if found else f"{verb} (no route)"
            self.calls[key] += 1
            if found:
                self.method_calls[found[0].id] += 1
            delay, injected = self._fault(found[0] if found else None, path)
            after = self.faults.after
        if after and (delay or injected):
            try:
                answer = self._handle(request, found)
            except ApiError as exc:
                answer = error_response(exc)
            if delay:
                time.sleep(delay)
            return injected or answer
        if delay:
            time.sleep(delay)
        if injected:
            return injected
        return self._handle(request, found)

    def _handle(self, request: Request, found: tuple[Method, dict[str, str]] | None) -> Response:
        verb, path = request.method, request.path
        if not found or found[0].id not in self.handlers:
            what = f"method {found[0].id} is not implemented by the stand-in" if found else "no such route"
            raise ApiError(404, f"{verb} {path}: {what} ({self.API} discovery document)")
        method, params = found
        allowed = method.query_parameters | self.api.global_query
        unknown = [k for k in request.args if k not in allowed]
        if unknown:
            raise ApiError(
                400,
                f'Invalid JSON payload received. Unknown name "{unknown[0]}": Cannot bind query parameter. '
                f"Field '{unknown[0]}' could not be found in request message.",
            )
        call = Call(method=method, params=params, query=request.args, request=request)
        with self.lock:  # serialized under the lock too: results may share state objects
            result = self.handlers[method.id](call)
            if isinstance(result, Response):
                return result
            if self.check:
                schema = self.response_schema(method)
                problems = self.api_of(method.id).check_fields(schema, result)
                if problems:
                    raise ApiError(500, f"stand-in response breaks {schema}: {problems}")
            return json_response(result)

    # -- faults -------------------------------------------------------------------------------

    def _fault(self, method: Method | None, path: str) -> tuple[float, Response | None]:
        """The delay and the injected error (if any) for this call; the caller sleeps unlocked."""
        delay, code = self.faults.pick(path, *([method.id] if method is not None else []))
        if code is None:
            return delay, None
        headers = {"Retry-After": "1"} if code == 429 else None
        message = {
            429: "Quota exceeded (injected by stand-in).",
            503: "The service is currently unavailable (injected by stand-in).",
        }.get(code, "Injected error (stand-in).")
        return delay, error_response(ApiError(code, message), headers)

    # -- /_standin/ -----------------------------------------------------------------------------

    def _internal(self, verb: str, path: str, request: Request) -> Response:
        route = (verb, path.rstrip("/"))
        if route == ("GET", "/_standin/health"):
            return json_response({"status": "ok", "api": self.API})
        if route == ("GET", "/_standin/stats"):
            with self.lock:
                return json_response(
                    {
                        "calls": dict(self.calls),
                        "methods": dict(self.method_calls),
                        "total": sum(self.calls.values()),
                    }
                )
        if route == ("POST", "/_standin/stats/reset"):
            with self.lock:
                self.calls.clear()
                self.method_calls.clear()
            return json_response({})
        if route == ("POST", "/_standin/faults"):
            spec = request.get_json(silent=True)
            if not isinstance(spec, dict):
                raise ApiError(400, "body must be a JSON object")
            with self.lock:
                try:
                    return json_response(self.faults.configure(spec))
                except ValueError as exc:
                    raise ApiError(400, str(exc)) from None
        if route == ("DELETE", "/_standin/faults"):
            with self.lock:
                self.faults.clear()
            return json_response({})
        if route == ("GET", "/_standin/state"):
            with self.lock:
                return json_response(self.state)
        extra = self.extra_routes.get(route)
        if extra is None:
            raise ApiError(404, f"{verb} {path}: no such stand-in route")
        with self.lock:
            result = extra(request)
            return result if isinstance(result, Response) else json_response(result)


# -- running ------------------------------------------------------------------------------------


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


@dataclass
class Handle:
    """A stand-in serving in a background thread of this process."""

    standin: StandIn
    server: BaseWSGIServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)
        self.standin.close()

    def __enter__(self) -> Handle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(standin: StandIn, port: int = 0, *, quiet: bool = True) -> Handle:
    """Serve ``standin`` on 127.0.0.1:``port`` (0 = any free port) in a daemon thread."""
    server = make_server(
        "127.0.0.1", port, standin, threaded=True, request_handler=_QuietHandler if quiet else None
    )
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.05},
        name=f"standin-{standin.NAME}",
        daemon=True,
    )
    thread.start()
    return Handle(standin, server, thread)


def base_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, required=True, help="TCP port on 127.0.0.1")
    parser.add_argument("--state-file", help="JSON file the state is loaded from and saved to")
    parser.add_argument(
        "--check-fields",
        action="store_true",
        help="debug: answer 500 when a response uses a field its discovery schema lacks",
    )
    return parser


def run_forever(standin: StandIn, port: int) -> None:
    """Serve in the foreground until SIGTERM/SIGINT, then flush and exit."""
    server = make_server("127.0.0.1", port, standin, threaded=True)

    def stop(signum: int, frame: object) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"{standin.NAME} stand-in ({standin.API}) on http://127.0.0.1:{server.server_port}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
        with contextlib.suppress(Exception):
            standin.close()
        print(f"{standin.NAME} stand-in stopped", file=sys.stderr, flush=True)
