"""The Logging stand-in: entries.list over JSON log lines, through google-cloud-logging (the client
`gatehouse history` uses), refusing what Cloud Logging refuses."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from gatehouse.adapters.logreader import LogReader
from gatehouse.errors import InputError
from gatehouse.local.standins.logging import start

PROJECT = "gatehouse-local"


def _line(time: str, **fields: object) -> str:
    return json.dumps(
        {"severity": "INFO", "message": "m", "time": time, "logger": "gatehouse.registration", **fields}
    )


@pytest.fixture
def logging_url(tmp_path: Path) -> Iterator[str]:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "on_run_event.log").write_text(
        "\n".join(
            [
                "plain text from the framework",
                _line(
                    "2026-12-06T10:00:00Z",
                    correlation_id="a",
                    service="projects/p/locations/r/services/orders",
                ),
                _line("2026-12-06T10:00:01Z", correlation_id="a", proxy="orders-1", result="registered"),
                _line(
                    "2026-12-06T09:00:00Z",
                    correlation_id="z",
                    service="projects/p/locations/r/services/other",
                ),
                '{"not": "an entry"}',
            ]
        )
    )
    (logs / "rotate-credentials-abc-0.log").write_text(
        "\n".join(
            _line(
                f"2026-12-06T11:{i // 60:02d}:{i % 60:02d}Z",
                correlation_id="run",
                secret_name="projects/1/secrets/s",
            )
            for i in range(120)
        )
    )
    with start(log_dir=str(logs), project=PROJECT, check_fields=True) as handle:
        yield handle.url


def test_the_official_client_reads_filtered_entries_in_order(logging_url: str) -> None:
    reader = LogReader(PROJECT, endpoint=logging_url, anonymous=True)
    found = list(
        reader.entries(
            'timestamp>="2026-12-06T09:30:00Z" AND jsonPayload.logger:"gatehouse" AND '
            '(jsonPayload.service="projects/p/locations/r/services/orders" OR jsonPayload.proxy="orders-1")',
            limit=100,
        )
    )
    assert [e["payload"]["correlation_id"] for e in found] == ["a", "a"]
    assert (
        found[0]["timestamp"].startswith("2026-12-06T10:00:00")
        and found[1]["payload"]["result"] == "registered"
    )


def test_pages_are_followed_and_limited(logging_url: str) -> None:
    reader = LogReader(PROJECT, endpoint=logging_url, anonymous=True)
    everything = list(
        reader.entries('jsonPayload.secret_name="projects/1/secrets/s"', limit=1000, page_size=50)
    )
    assert len(everything) == 120
    assert len(list(reader.entries('timestamp>="2026-01-01T00:00:00Z"', limit=30, page_size=50))) == 30


@pytest.mark.parametrize(
    "bad",
    ["jsonPayload.service=unquoted", '(jsonPayload.a="b"', "AND", 'jsonPayload.a ~ "b"', 'severity>="LOUD"'],
)
def test_a_filter_it_cannot_parse_is_invalid_argument(logging_url: str, bad: str) -> None:
    reader = LogReader(PROJECT, endpoint=logging_url, anonymous=True)
    with pytest.raises(InputError, match="refused the query"):
        list(reader.entries(bad, limit=10))


def test_requests_the_api_refuses(logging_url: str) -> None:
    url = f"{logging_url}/v2/entries:list"
    assert requests.post(url, json={}, timeout=10).status_code == 400  # resourceNames is required
    assert requests.post(url, json={"resourceNames": ["nope"]}, timeout=10).status_code == 400
    too_big = {"resourceNames": [f"projects/{PROJECT}"], "pageSize": 1001}
    assert requests.post(url, json=too_big, timeout=10).status_code == 400
    answer = requests.post(url, json={"resourceNames": [f"projects/{PROJECT}"], "pageSize": 2}, timeout=10)
    assert answer.ok and len(answer.json()["entries"]) == 2 and answer.json()["nextPageToken"]
    assert requests.get(f"{logging_url}/v2/entries", timeout=10).status_code == 404  # not a discovery route
