"""Profiles: the shipped file, and every way a profiles file can be wrong."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from gatehouse.errors import InputError
from gatehouse.profiles import (
    ApiKeyAuth,
    JwtAuth,
    NoAuth,
    OAuth2Auth,
    ProfileSet,
    load_profiles,
    parse_profiles,
    validate_origin,
    validate_rate,
)


def parse(text: str) -> ProfileSet:
    return parse_profiles(textwrap.dedent(text).lstrip("\n"), source="p.yaml")


# --------------------------------------------------------------------------------------------------
# The shipped file


def test_shipped_profiles() -> None:
    profiles = load_profiles()
    assert profiles.default == "apikey"
    assert profiles.names == ("agent", "apikey", "jwt", "oauth2", "public")
    modes = {name: profile.auth.mode for name, profile in profiles.profiles.items()}
    assert modes == {
        "agent": "apikey",
        "apikey": "apikey",
        "jwt": "jwt",
        "oauth2": "oauth2",
        "public": "none",
    }
    assert all(profile.name == name for name, profile in profiles.profiles.items())
    assert [name for name, profile in profiles.profiles.items() if profile.public] == ["public"]


def test_shipped_apikey_profile_reads_the_header_and_the_product_quota() -> None:
    apikey = load_profiles().profiles["apikey"]
    assert isinstance(apikey.auth, ApiKeyAuth)
    assert apikey.auth.key_header == "x-api-key"
    assert apikey.quota is not None
    assert apikey.quota.from_product
    assert apikey.quota.per == "client"


def test_shipped_jwt_profile_defaults_to_google_identity() -> None:
    jwt = load_profiles().profiles["jwt"].auth
    assert isinstance(jwt, JwtAuth)
    assert jwt.jwks_uri == "https://www.googleapis.com/oauth2/v3/certs"
    assert jwt.issuer == "https://accounts.google.com"
    assert jwt.audience is None  # per service: gatehouse.dev/jwt-audience


def test_shipped_agent_profile_protects_payloads() -> None:
    agent = load_profiles().profiles["agent"]
    assert agent.threat_protection is not None
    assert agent.threat_protection.json_payload is not None
    assert agent.threat_protection.xml_payload is not None


def test_get_a_profile_by_name() -> None:
    profiles = load_profiles()
    assert profiles.get("jwt") is profiles.profiles["jwt"]
    with pytest.raises(
        InputError, match=r"unknown profile 'gold' \(known: agent, apikey, jwt, oauth2, public\)"
    ):
        profiles.get("gold")


def test_load_from_a_path(tmp_path: Path) -> None:
    path = tmp_path / "profiles.yaml"
    path.write_text(
        "default: okta\nprofiles:\n  okta:\n    auth: {mode: jwt, issuer: https://acme.okta.com}\n"
    )
    profiles = load_profiles(path)
    assert profiles.names == ("okta",)
    assert isinstance(profiles.profiles["okta"].auth, JwtAuth)


def test_missing_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"cannot read profiles file .*nope\.yaml"):
        load_profiles(tmp_path / "nope.yaml")


def test_every_auth_mode_parses() -> None:
    profiles = parse(
        """
        default: key
        profiles:
          key: {auth: {mode: apikey, query_param: apikey}}
          token: {auth: {mode: oauth2, scopes: [orders.read, orders.write]}}
          okta:
            auth:
              mode: jwt
              jwks_uri: https://acme.okta.com/oauth2/default/v1/keys
              issuer: https://acme.okta.com/oauth2/default
              audience: api://default
              algorithm: ES256
          open: {auth: {mode: none, i_understand_this_is_public: true}}
        """
    )
    key, token, okta, open_ = (profiles.profiles[name].auth for name in ("key", "token", "okta", "open"))
    assert isinstance(key, ApiKeyAuth)
    assert key.key_header is None
    assert key.query_param == "apikey"
    assert isinstance(token, OAuth2Auth)
    assert token.scopes == ("orders.read", "orders.write")
    assert isinstance(okta, JwtAuth)
    assert okta.algorithm == "ES256"
    assert isinstance(open_, NoAuth)


# --------------------------------------------------------------------------------------------------
# Errors: each with its YAML location and key path

BAD_FILES = [
    (
        "unknown auth mode",
        """
        default: a
        profiles:
          a:
            auth:
              mode: saml
        """,
        "p.yaml:4: profiles.a.auth: unknown auth mode 'saml' (expected one of apikey, jwt, oauth2, none)",
    ),
    (
        "auth without mode",
        """
        default: a
        profiles:
          a: {auth: {header: x-key}}
        """,
        "p.yaml:3: profiles.a.auth: auth needs a mode (one of apikey, jwt, oauth2, none)",
    ),
    (
        "none without the explicit flag",
        """
        default: a
        profiles:
          a: {auth: {mode: apikey}}
          open:
            auth:
              mode: none
        """,
        "p.yaml:5: profiles.open.auth: auth mode 'none' lets anyone call the service; "
        "set i_understand_this_is_public: true to confirm",
    ),
    (
        "none with the flag false",
        """
        default: a
        profiles:
          a: {auth: {mode: apikey}}
          open: {auth: {mode: none, i_understand_this_is_public: false}}
        """,
        "profiles.open.auth: auth mode 'none' lets anyone call the service",
    ),
    (
        "public default",
        """
        default: open
        profiles:
          open: {auth: {mode: none, i_understand_this_is_public: true}}
        """,
        "default profile 'open' must authenticate callers (auth mode is 'none')",
    ),
    (
        "undefined default",
        """
        default: gold
        profiles:
          a: {auth: {mode: apikey}}
        """,
        "default profile 'gold' is not defined",
    ),
    (
        "no profiles",
        """
        default: a
        profiles: {}
        """,
        "at least one profile is required",
    ),
    (
        "rate syntax",
        """
        default: a
        profiles:
          a:
            auth: {mode: apikey}
            spike_arrest:
              rate: 100/s
        """,
        "p.yaml:6: profiles.a.spike_arrest.rate: must be a whole number of requests per second or minute",
    ),
    (
        "rate above Apigee's limit",
        """
        default: a
        profiles:
          a:
            auth: {mode: apikey}
            spike_arrest: {rate: 5000ps}
        """,
        "p.yaml:5: profiles.a.spike_arrest.rate: 5000ps exceeds Apigee's SpikeArrest limit of 1000ps",
    ),
    (
        "typo in a key",
        """
        default: a
        profiles:
          a:
            auth: {mode: jwt, audiance: x}
        """,
        "p.yaml:4: profiles.a.auth.audiance: unknown key",
    ),
    (
        "unknown top-level key",
        """
        default: a
        profile:
          a: {auth: {mode: apikey}}
        profiles:
          a: {auth: {mode: apikey}}
        """,
        "p.yaml:2: profile: unknown key",
    ),
    (
        "quota window above a year",
        """
        default: a
        profiles:
          a:
            auth: {mode: apikey}
            quota: {allow: 10, interval: 13, time_unit: month}
        """,
        "profiles.a.quota: interval 13 month is outside Apigee's range (1 minute to 1 year)",
    ),
    (
        "quota time unit",
        """
        default: a
        profiles:
          a:
            auth: {mode: apikey}
            quota: {allow: 10, time_unit: fortnight}
        """,
        "profiles.a.quota.time_unit: Input should be 'minute', 'hour', 'day', 'week' or 'month'",
    ),
    (
        "product quota without an api key",
        """
        default: a
        profiles:
          a:
            auth: {mode: oauth2}
            quota: {allow: 10, time_unit: hour, from_product: true}
        """,
        "profiles.a: quota.from_product needs auth mode apikey",
    ),
    (
        "per-client quota without callers",
        """
        default: a
        profiles:
          a: {auth: {mode: apikey}}
          open:
            auth: {mode: none, i_understand_this_is_public: true}
            quota: {allow: 10, time_unit: hour}
        """,
        "profiles.open: quota.per 'client' needs an authenticated caller; use per: proxy",
    ),
    (
        "api key from two places",
        """
        default: a
        profiles:
          a: {auth: {mode: apikey, header: x-key, query_param: key}}
        """,
        "profiles.a.auth: set either header or query_param, not both",
    ),
    (
        "cors wildcard with credentials",
        """
        default: a
        profiles:
          a:
            auth: {mode: apikey}
            cors: {allow_origins: ['*'], allow_credentials: true}
        """,
        "profiles.a.cors: '*' cannot be used when the profile allows credentials",
    ),
    (
        "cors origin with a path",
        """
        default: a
        profiles:
          a:
            auth: {mode: apikey}
            cors: {allow_origins: ['https://app.example.com/']}
        """,
        "profiles.a.cors.allow_origins.0: origin must look like 'https://app.example.com'",
    ),
    (
        "cors headers wildcard mixed",
        """
        default: a
        profiles:
          a:
            auth: {mode: apikey}
            cors: {allow_origins: ['https://a.example'], allow_headers: ['*', accept]}
        """,
        "profiles.a.cors: allow_headers: '*' cannot be combined with other values",
    ),
    (
        "setting Authorization",
        """
        default: a
        profiles:
          a:
            auth: {mode: apikey}
            headers: {request: {set: {Authorization: Basic x}}}
        """,
        "profiles.a.headers.request: request headers cannot set Authorization: "
        "it carries the Google ID token",
    ),
    (
        "header set and removed",
        """
        default: a
        profiles:
          a:
            auth: {mode: apikey}
            headers: {response: {set: {X-Frame-Options: DENY}, remove: [x-frame-options]}}
        """,
        "profiles.a.headers.response: headers both set and removed: x-frame-options",
    ),
    (
        "header value with a newline",
        """
        default: a
        profiles:
          a:
            auth: {mode: apikey}
            headers: {request: {set: {x-a: "v\\r\\nx-b: 1"}}}
        """,
        "invalid header value (printable ASCII, at most 1024)",
    ),
    (
        "header name",
        """
        default: a
        profiles:
          a:
            auth: {mode: apikey}
            headers: {request: {remove: ["x a"]}}
        """,
        "profiles.a.headers.request.remove.0: invalid header name: 'x a'",
    ),
    (
        "keystore not a reference",
        """
        default: a
        profiles:
          a:
            auth: {mode: apikey}
            target: {mtls: {key_store: client-ks, key_alias: k}}
        """,
        "profiles.a.target.mtls.key_store: invalid keystore/truststore reference (ref://name): 'client-ks'",
    ),
    (
        "read timeout too long",
        """
        default: a
        profiles:
          a:
            auth: {mode: apikey}
            target: {read_timeout_ms: 900000}
        """,
        "profiles.a.target.read_timeout_ms: Input should be less than or equal to 300000",
    ),
    (
        "empty threat protection",
        """
        default: a
        profiles:
          a:
            auth: {mode: apikey}
            threat_protection: {}
        """,
        "profiles.a.threat_protection: threat_protection needs json_payload, xml_payload or regex",
    ),
    (
        "bad regex",
        """
        default: a
        profiles:
          a:
            auth: {mode: apikey}
            threat_protection: {regex: {uri_path: ['(unclosed']}}
        """,
        "profiles.a.threat_protection.regex.uri_path.0: invalid regular expression '(unclosed'",
    ),
    (
        "jwks over http",
        """
        default: a
        profiles:
          a: {auth: {mode: jwt, jwks_uri: 'http://idp.example.com/keys'}}
        """,
        "profiles.a.auth.jwks_uri: invalid https URL: 'http://idp.example.com/keys'",
    ),
    (
        "issuer with a template",
        """
        default: a
        profiles:
          a: {auth: {mode: jwt, issuer: '{request.header.iss}'}}
        """,
        "profiles.a.auth.issuer: must be 1-255 URI characters",
    ),
    (
        "profile name",
        """
        default: a
        profiles:
          a: {auth: {mode: apikey}}
          Gold: {auth: {mode: apikey}}
        """,
        "profile name 'Gold' must be 1-63 lowercase letters, digits, '-' or '_'",
    ),
    (
        "name inside a profile",
        """
        default: a
        profiles:
          a: {name: b, auth: {mode: apikey}}
        """,
        "profiles.a: 'name' is taken from the key; remove it",
    ),
    (
        "future version",
        """
        version: 2
        default: a
        profiles:
          a: {auth: {mode: apikey}}
        """,
        "p.yaml:1: version: Input should be 1",
    ),
    (
        "duplicate key",
        """
        default: a
        profiles:
          a: {auth: {mode: apikey}}
          a: {auth: {mode: jwt}}
        """,
        "p.yaml:4: invalid YAML: duplicate key 'a'",
    ),
    (
        "yaml syntax",
        """
        default: [a
        profiles: {}
        """,
        "p.yaml:2: invalid YAML:",
    ),
    ("not a mapping", "- a\n- b\n", "p.yaml:1: the profiles file must be a mapping"),
    ("empty file", "", "p.yaml:1: the profiles file must be a mapping"),
]


@pytest.mark.parametrize(("case", "text", "message"), BAD_FILES, ids=[case for case, _, _ in BAD_FILES])
def test_invalid_profiles_files(case: str, text: str, message: str) -> None:
    with pytest.raises(InputError) as info:
        parse(text)
    assert message in str(info.value)


def test_all_problems_are_listed_at_once() -> None:
    with pytest.raises(InputError) as info:
        parse(
            """
            default: a
            profiles:
              a:
                auth: {mode: apikey}
                spike_arrest: {rate: fast}
                quota: {allow: 0, time_unit: hour}
            """
        )
    assert "profiles.a.spike_arrest.rate" in str(info.value)
    assert "profiles.a.quota.allow" in str(info.value)


# --------------------------------------------------------------------------------------------------
# Shared grammar


@pytest.mark.parametrize("rate", ["1ps", "1000ps", "1pm", "60000pm"])
def test_valid_rates(rate: str) -> None:
    assert validate_rate(rate) == rate


@pytest.mark.parametrize(
    "rate", ["0ps", "1001ps", "60001pm", "10ph", "ps", "10 ps", "\uff11\uff10ps", "10ps\n"]
)
def test_invalid_rates(rate: str) -> None:
    with pytest.raises(ValueError):
        validate_rate(rate)


@pytest.mark.parametrize("origin", ["https://a.example", "https://a-b.c.example:8443", "https://localhost"])
def test_valid_origins(origin: str) -> None:
    assert validate_origin(origin) == origin


@pytest.mark.parametrize(
    "origin",
    [
        "http://a.example",
        "https://a.example/",
        "https://A.example",
        "https://a.example:0",
        "https://-a.example",
        "https://a.example\n",
        "https://a..example",
        "https://\uff41.example",
    ],
)
def test_invalid_origins(origin: str) -> None:
    with pytest.raises(ValueError):
        validate_origin(origin)
