"""The shared REST plumbing: one error vocabulary, retries that honour Retry-After, a rate limit."""

from __future__ import annotations

import json

import pytest
import requests

from gatehouse.adapters.http import RateLimiter, error_from_response, retrying
from gatehouse.errors import ConflictError, NotFoundError, PermanentError, TransientError


def response(status: int, body: object = None, headers: dict[str, str] | None = None) -> requests.Response:
    r = requests.Response()
    r.status_code = status
    r._content = json.dumps(body).encode() if body is not None else b""
    r.headers.update(headers or {})
    r.reason = "reason"
    return r


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (429, TransientError),
        (500, TransientError),
        (502, TransientError),
        (503, TransientError),
        (504, TransientError),
        (408, TransientError),
        (400, PermanentError),
        (401, PermanentError),
        (403, PermanentError),
        (404, NotFoundError),
        (409, ConflictError),
    ],
)
def test_statuses_map_onto_one_vocabulary(status: int, kind: type[Exception]) -> None:
    assert type(error_from_response(response(status, {"error": {"message": "m"}}), "call")) is kind


def test_google_rpc_status_details_reach_the_message() -> None:
    body = {
        "error": {
            "code": 400,
            "status": "FAILED_PRECONDITION",
            "message": "deployment validations failed",
            "details": [
                {
                    "@type": "type.googleapis.com/google.rpc.PreconditionFailure",
                    "violations": [
                        {"type": "CONFLICTING_DEPLOYMENT", "description": "Only one revision can be deployed"}
                    ],
                }
            ],
        }
    }
    error = error_from_response(response(400, body), "deploy orders r2")
    assert isinstance(error, PermanentError) and error.reason == "FAILED_PRECONDITION"
    assert "CONFLICTING_DEPLOYMENT: Only one revision can be deployed" in str(error)
    assert str(error).startswith("deploy orders r2: HTTP 400")


def test_retry_after_is_honoured_and_permanent_errors_are_not_retried() -> None:
    policy = retrying(attempts=4, max_wait=30.0, initial=0.01)
    waits: list[float] = []
    policy.sleep = waits.append  # type: ignore[method-assign]
    answers = iter(
        [
            error_from_response(response(429, {}, {"Retry-After": "7"}), "x"),
            error_from_response(response(503, {}), "x"),
        ]
    )

    def flaky() -> str:
        error = next(answers, None)
        if error:
            raise error
        return "ok"

    assert policy(flaky) == "ok"
    assert waits[0] == 7.0 and 0 < waits[1] < 1  # the server's Retry-After, then our own backoff
    calls = []

    def refused() -> None:
        calls.append(1)
        raise error_from_response(response(400, {}), "x")

    with pytest.raises(PermanentError):
        policy(refused)
    assert len(calls) == 1


def test_a_retry_after_beyond_the_budget_is_capped() -> None:
    policy = retrying(attempts=2, max_wait=5.0, initial=0.01)
    waits: list[float] = []
    policy.sleep = waits.append  # type: ignore[method-assign]
    answers = iter([TransientError("slow down", retry_after=3600)])

    def once() -> str:
        error = next(answers, None)
        if error:
            raise error
        return "ok"

    assert policy(once) == "ok" and waits == [5.0]


def test_rate_limiter_spaces_calls_after_the_burst() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    limiter = RateLimiter(per_minute=600, burst=2, clock=lambda: now[0], sleep=sleep)
    for _ in range(5):
        limiter.acquire()
    # 2 calls ride the burst, then one every 0.1 s (600 a minute)
    assert slept == pytest.approx([0.1, 0.1, 0.1])
