"""Hostile label and annotation values never change the structure of a bundle.

For every contract key, an arbitrary value either is rejected (InputError) or yields a bundle
whose files parse and whose element structure (file, tag path, attribute names) is exactly the
structure rendered from a benign value of the same key: values only ever become text.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hypothesis import event, given, settings
from hypothesis import strategies as st

from gatehouse.bundle import Bundle, render
from gatehouse.errors import InputError
from gatehouse.exposure import NotExposed, ProxySpec, RunService, desired
from gatehouse.profiles import load_profiles

PROFILES = load_profiles()
BASE = json.loads((Path(__file__).parent / "fixtures" / "services" / "v2-default-profile.json").read_text())

# (label or annotation, key, benign value, a grammar of mostly valid values, a looser one around it)
Case = tuple[str, str, str, str, str]
CASES: list[Case] = [
    ("label", "apigee-expose", "true", "true", r"(true|false|True|)[ \n]?"),
    ("label", "apigee-profile", "apikey", "(apikey|oauth2|agent|public)", r"(apikey|jwt|gold)[ \n\x00]?"),
    (
        "annotation",
        "gatehouse.dev/base-path",
        "/catalog/v1",
        r"(/[A-Za-z0-9._~-]{1,10}){1,5}(/\*(/[a-z]{1,5})?)?",
        r"/?[A-Za-z0-9._~*/%<>'\"&-]{0,40}",
    ),
    (
        "annotation",
        "gatehouse.dev/environments",
        "test",
        r"[a-z][a-z0-9-]{0,10}(, ?[a-z][a-z0-9-]{0,10}){0,3}",
        r"[a-z0-9 ,_-]{0,40}",
    ),
    ("annotation", "gatehouse.dev/rate-limit", "30ps", r"[1-9][0-9]{0,2}(ps|pm)", r"[0-9]{1,6}(ps|pm|PS)"),
    (
        "annotation",
        "gatehouse.dev/quota",
        "100/hour",
        r"[1-9][0-9]{0,8}/(minute|hour|day|week|month)",
        r"[0-9]{1,11}/(minute|hour|day|week|month|year)",
    ),
    (
        "annotation",
        "gatehouse.dev/target-timeout",
        "30s",
        r"([1-9][0-9]{2,4}ms|[1-9][0-9]?s)",
        r"[0-9]{1,7}(ms|s)",
    ),
    (
        "annotation",
        "gatehouse.dev/jwt-audience",
        "api://default",
        r"[A-Za-z0-9][A-Za-z0-9._~:/@%+=-]{0,50}",
        r"[A-Za-z0-9._~:/@%+=<>{}\"& -]{0,60}",
    ),
    (
        "annotation",
        "gatehouse.dev/cors-origins",
        "https://app.example.com",
        r"(\*|https://[a-z0-9]{1,10}\.example(:[1-9][0-9]{0,3})?(, ?https://[a-z0-9]{1,10}\.example){0,2})",
        r"(\*|https?://[a-z0-9.<>-]{1,20}(:[0-9]{1,6})?/?)(, ?(\*|https://[a-z0-9.-]{1,20})){0,3}",
    ),
]
# the jwt-audience case runs under the jwt profile
PROFILE_FOR = {"gatehouse.dev/jwt-audience": "jwt"}

HOSTILE = [
    "</BasePath><RouteRule name='x'/>",
    '"><x a="',
    "<![CDATA[x]]>",
    "<!--",
    "&amp;&lt;&#0;",
    "{request.header.host}",
    "ref://x",
    "\r\nX-Injected: 1",
    "../../etc/passwd",
    "/catalog/../admin",
    "\x00",
    "/catalog\x00",
    "\u202e/catalog",
    "/cat\u200balog",
    "/catalog\u2215admin",
    "/catalog\uff0fadmin",
    "https://app\u2024example.com",
    "\ufeff30ps",
    "30ps\n",
    "\U0001f600",
    "a" * 100_000,
    "/" + "a/" * 3000,
    ",".join(["test"] * 5000),
]


def values_for(case: Case) -> st.SearchStrategy[str]:
    """Arbitrary text, known-hostile strings, (near-)valid values, and valid values with junk attached."""
    _, _, benign, valid, loose = case
    return st.one_of(
        st.text(),
        st.sampled_from(HOSTILE),
        st.from_regex(valid, fullmatch=True),
        st.from_regex(loose, fullmatch=True),
        st.tuples(st.just(benign), st.text(max_size=20)).map("".join),
        st.tuples(st.text(max_size=5), st.just(benign)).map("".join),
    )


cases_and_values = st.sampled_from(CASES).flatmap(lambda case: st.tuples(st.just(case), values_for(case)))


def outcome(labels: dict[str, str], annotations: dict[str, str]) -> Bundle | NotExposed:
    doc = json.loads(json.dumps(BASE))
    doc["labels"].update(labels)
    doc["annotations"].update(annotations)
    result = desired(RunService.from_json(doc), PROFILES, default_environments=["test"])
    if isinstance(result, NotExposed):
        return result
    assert isinstance(result, ProxySpec)
    return render(result, PROFILES.profiles[result.profile])


def inputs(case: Case, value: str) -> tuple[dict[str, str], dict[str, str]]:
    kind, key, *_ = case
    labels = {"apigee-expose": "true"}
    profile = PROFILE_FOR.get(key)
    if profile is not None:
        labels["apigee-profile"] = profile
    annotations: dict[str, str] = {}
    (labels if kind == "label" else annotations)[key] = value
    return labels, annotations


def walk(element: ET.Element, prefix: str) -> Iterator[tuple[str, tuple[str, ...]]]:
    path = f"{prefix}/{element.tag}"
    yield path, tuple(sorted(element.attrib))
    for child in element:
        yield from walk(child, path)


def structure(bundle: Bundle) -> Counter[tuple[str, str, tuple[str, ...]]]:
    shape: Counter[tuple[str, str, tuple[str, ...]]] = Counter()
    for name, content in bundle.files.items():
        root = ET.fromstring(content)
        for path, attributes in walk(root, ""):
            shape[(name, path, attributes)] += 1
    return shape


def benign_structure(case: Case, value: str) -> Counter[Any]:
    labels, annotations = inputs(case, value)
    bundle = outcome(labels, annotations)
    assert isinstance(bundle, Bundle)
    return structure(bundle)


@settings(max_examples=150, deadline=None)
@given(case_and_value=cases_and_values)
def test_hostile_values_are_rejected_or_inert(case_and_value: tuple[Case, str]) -> None:
    case, value = case_and_value
    _, key, benign, *_ = case
    labels, annotations = inputs(case, value)
    try:
        result = outcome(labels, annotations)
    except InputError as error:
        event("rejected")
        assert str(error).isprintable()  # safe to log: no CR/LF, no control or bidi characters
        return
    if isinstance(result, NotExposed):
        event("not exposed")
        assert key == "apigee-expose"
        return
    event(f"rendered ({key})")
    if key == "apigee-profile":
        assert value in PROFILES.profiles  # only an exact profile name is accepted
        benign = value
    assert structure(result) == benign_structure(case, benign)


@settings(max_examples=150, deadline=None)
@given(
    extra_labels=st.dictionaries(st.text(max_size=70), st.text(max_size=70), max_size=5),
    extra_annotations=st.dictionaries(st.text(max_size=70), st.text(max_size=300), max_size=5),
)
def test_unrelated_labels_and_annotations_change_nothing(
    extra_labels: dict[str, str], extra_annotations: dict[str, str]
) -> None:
    extra_labels = {k: v for k, v in extra_labels.items() if k not in ("apigee-expose", "apigee-profile")}
    reference = outcome({"apigee-expose": "true"}, {})
    assert isinstance(reference, Bundle)
    try:
        result = outcome({"apigee-expose": "true", **extra_labels}, extra_annotations)
    except InputError as error:
        # only a gatehouse.dev/ annotation can be rejected
        assert any(key.lower().startswith("gatehouse.dev/") for key in extra_annotations)
        assert str(error).isprintable()
        return
    assert isinstance(result, Bundle)
    assert result.sha256 == reference.sha256
