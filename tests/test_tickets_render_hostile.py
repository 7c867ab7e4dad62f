"""Ticket injection through incident fields: whatever an alert carries (its console ``url``, policy
and condition names, summary, ids, values) must reach a ticket, a comment or the digest as inert text.

Each body is parsed as GitHub-flavoured Markdown (CommonMark plus tables, as GitHub does) and
checked: no raw HTML but gatehouse's own, no image, links only to the Cloud console (plus the
tracker's own ticket links), no heading but the body's own sections, tables with the same number
of cells on every row, and no @mention, ``#1``/``GH-1`` reference or autolinkable URL in the text.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gatehouse.events import Incident
from gatehouse.tickets.render import (
    DigestItem,
    Problem,
    digest_body,
    digest_comment,
    issue_body,
    update_comment,
)
from gatehouse.tickets.settings import GITHUB_BODY_LIMIT
from tests.test_tickets_render import START, make_incident, make_problem

markdown_it = pytest.importorskip("markdown_it")

CONSOLE = "console.cloud.google.com"
OWN_HTML = ("<!-- gatehouse -->", "<details><summary>Per-minute evidence</summary>", "</details>")
OWN_HEADINGS = ("What is slow", "Why", "What to change: ", "Links", "Cleared")
HOSTILE_URLS = [
    "https://console.cloud.google.com/x)\n### Owned\n<a href=https://evil.example>x</a>",
    "https://evil.example/monitoring/alerting/incidents/1",
    "http://console.cloud.google.com/monitoring",
    "https://console.cloud.google.com@evil.example/",
    "https://console.cloud.google.com.evil.example/",
    "https://evil.example\\@console.cloud.google.com/",
    "https://console.cloud.google.com:8443/x",
    "https://console.cloud.google.com/a|b|c",
    'https://console.cloud.google.com/x"><img src=https://evil.example/p.gif>',
    "https://console.cloud.google.com/x) ![p](https://evil.example/p.gif",
    "javascript:alert(1)//https://console.cloud.google.com/",
    "https://console.cloud.google.com/x\r\n\r\n# big",
]
FRAGMENTS = [
    "@",
    "@platform-team",
    "#1",
    "GH-2",
    "owner/repo#3",
    "\n",
    "\r\n",
    "\u2028",
    "|",
    "<img src=https://evil.example/p.gif>",
    "<a href='https://evil.example'>",
    "[x](https://evil.example)",
    "![p](https://evil.example/p.gif)",
    "`",
    "```",
    "*",
    "_",
    "\\",
    "&#64;",
    "&commat;",
    "&#35;1",
    "www.evil.example",
    "https://evil.example",
    "https://console.cloud.google.com/",
    ")",
    "(",
    "]",
    ">",
    "- ",
    "1. ",
    "### ",
    "<!--",
    "-->",
    "\u200b",
]
hostile = st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=4), max_size=12).map("".join)


def tokens(text: str) -> Iterator[Any]:
    parser = markdown_it.MarkdownIt("commonmark").enable("table")
    for token in parser.parse(text):
        yield token
        yield from token.children or ()


def check(text: str, *, tracker_links: tuple[str, ...] = ()) -> None:
    """The invariants every body and comment keeps whatever the incident fields held."""
    all_tokens = list(tokens(text))
    in_link = False
    for token in all_tokens:
        in_link = (in_link or token.type == "link_open") and token.type != "link_close"
        if token.type in ("html_block", "html_inline"):
            assert token.content.strip() in OWN_HTML, token.content
        assert token.type != "image", token
        if token.type == "link_open":
            href = token.attrs["href"]
            assert urlsplit(href).hostname == CONSOLE or href in tracker_links, href
        if token.type in {"text", "softbreak"}:
            content = token.content
            assert not re.search(r"@[A-Za-z0-9]", content), content
            assert not re.search(r"#[0-9]", content), content
            assert not re.search(r"(?i)\bgh-[0-9]", content), content
            assert in_link or not re.search(r"(?i)https?://|www\.", content), content
    headings = [all_tokens[i + 1].content for i, t in enumerate(all_tokens) if t.type == "heading_open"]
    assert all(h.startswith(OWN_HEADINGS) for h in headings), headings
    # every table keeps one cell count: no row gained or lost a column
    group: list[int] = []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            group.append(len(re.findall(r"(?<!\\)\|", line)))
        else:
            assert len(set(group)) <= 1, group
            group = []


def hostile_incident(value: str, url: str | None = None, **overrides: object) -> Incident:
    fields: dict[str, object] = {
        "incident_id": value or "0.x",
        "policy": value,
        "condition": value,
        "summary": value,
        "observed_value": value,
        "threshold_value": value,
        "url": url if url is not None else value,
    }
    fields.update(overrides)
    return make_incident(**fields)


def renderings(problem: Problem, incident: Incident) -> list[str]:
    closed = make_incident(
        incident_id=incident.incident_id,
        state="closed",
        ended_at=START + 7200,
        observed_value=incident.observed_value,
        url=incident.url,
    )
    return [
        issue_body(problem, max_chars=GITHUB_BODY_LIMIT),
        issue_body(
            problem,
            max_chars=GITHUB_BODY_LIMIT,
            previous="https://github.com/shop/platform/issues/12",
            previous_reason=incident.summary,
        ),
        update_comment(
            problem,
            new_opened=[incident],
            new_closed=[closed],
            ticket_proposal="target-timeouts",
            reason=incident.summary or "",
            max_chars=GITHUB_BODY_LIMIT,
        ),
        digest_body(
            [DigestItem.of(problem)], bucket="2025031414", cap=5, omitted=0, max_chars=GITHUB_BODY_LIMIT
        ),
        digest_comment([DigestItem.of(problem)], omitted=0, max_chars=GITHUB_BODY_LIMIT),
    ]


@pytest.mark.parametrize("url", HOSTILE_URLS)
def test_hostile_incident_urls_are_never_links_and_break_nothing(url: str) -> None:
    incident = hostile_incident("orders-v1 p95", url=url, incident_id="0.abc")
    problem = make_problem(opened=(incident,))
    for text in renderings(problem, incident):
        check(text, tracker_links=("https://github.com/shop/platform/issues/12",))
        assert "evil.example" not in text or "`" in text  # only ever shown inside a code span
        assert "\n### Owned" not in text and "\n# big" not in text


def test_console_urls_stay_links_and_other_urls_are_shown_as_text() -> None:
    good = "https://console.cloud.google.com/monitoring/alerting/incidents/0.abc?project=shop-prod-417"
    body = issue_body(make_problem(opened=(make_incident(url=good),)), max_chars=GITHUB_BODY_LIMIT)
    assert f"[0.abc]({good})" in body and f"[Incident 0.abc]({good})" in body
    evil = "https://evil.example/x"
    body = issue_body(make_problem(opened=(make_incident(url=evil),)), max_chars=GITHUB_BODY_LIMIT)
    assert f"]({evil})" not in body and "(`https\u200b://evil.example/x`)" in body
    check(body)


def test_references_mentions_and_entities_are_defused() -> None:
    incident = make_incident(
        summary="see #1, GH-2 and shop/platform#3, ask @platform-team or &#64;oncall, www.evil.example",
        policy="&lt;img src=x&gt; https://evil.example",
    )
    for text in renderings(make_problem(opened=(incident,)), incident):
        check(text, tracker_links=("https://github.com/shop/platform/issues/12",))


BASE = make_problem()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=hostile, url=hostile | st.sampled_from(HOSTILE_URLS))
def test_any_incident_text_renders_inert(value: str, url: str) -> None:
    incident = hostile_incident(value, url=url)
    problem = dataclasses.replace(BASE, opened=(incident,))
    for text in renderings(problem, incident):
        check(text, tracker_links=("https://github.com/shop/platform/issues/12",))


def test_jira_gets_the_same_inert_text() -> None:
    """The Markdown -> ADF conversion undoes the escapes (``\\&`` included) and links only the console."""
    from gatehouse.adapters.trackers import markdown_to_adf

    incident = hostile_incident("a & b <img src=x> @team #1", url=HOSTILE_URLS[0], incident_id="0.a&b")
    doc = markdown_to_adf(issue_body(make_problem(opened=(incident,)), max_chars=GITHUB_BODY_LIMIT))

    def walk(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
        yield node
        for child in node.get("content", []):
            yield from walk(child)

    texts = [n.get("text", "") for n in walk(doc)]
    assert any("a & b <img src=x> @\u200bteam #\u200b1" in t for t in texts)
    assert any("Incident 0.a&b" in t for t in texts) and not any("\\&" in t for t in texts)
    hrefs = [m["attrs"]["href"] for n in walk(doc) for m in n.get("marks", []) if m.get("type") == "link"]
    assert hrefs and all(urlsplit(h).hostname == CONSOLE for h in hrefs)
