"""gatehouse.tickets.proxyconfig: routing facts from any bundle; only a non-zip raises (InputError)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from gatehouse.errors import InputError
from gatehouse.tickets.proxyconfig import MAX_FILE_BYTES, UNKNOWN, Rate, parse_bundle
from tests.tickets_fakes import PROXY_ENDPOINT, bundle_zip, direct_bundle

CORPUS_BUNDLES = Path(__file__).parents[2] / "shared" / "corpus" / "apigee-bundles"

LB_TARGET = """<TargetEndpoint name="default">
  <HTTPTargetConnection>
    <LoadBalancer>
      <Algorithm>RoundRobin</Algorithm>
      <Server name="orders-ew1"/>
      <Server name="orders-ew4"><IsFallback>true</IsFallback></Server>
      <MaxFailures>5</MaxFailures>
      <RetryEnabled>false</RetryEnabled>
    </LoadBalancer>
    <Path>/v1</Path>
    <HealthMonitor>
      <IsEnabled>true</IsEnabled>
      <IntervalInSec>5</IntervalInSec>
      <TCPMonitor><ConnectTimeoutInSec>5</ConnectTimeoutInSec><Port>443</Port></TCPMonitor>
    </HealthMonitor>
    <Properties>
      <Property name="connect.timeout.millis">1500</Property>
      <Property name="io.timeout.millis">4000</Property>
    </Properties>
  </HTTPTargetConnection>
</TargetEndpoint>"""

SPIKE = '<SpikeArrest name="SA-1" enabled="{enabled}"><Rate>{rate}</Rate></SpikeArrest>'
CACHE = '<ResponseCache name="RC-1"><CacheKey><KeyFragment ref="request.uri"/></CacheKey></ResponseCache>'


def test_direct_url_target() -> None:
    config = parse_bundle(direct_bundle())
    assert config.known and config.name == "orders-v1" and config.revision == "7"
    target = config.target
    assert target is not None and target.name == "default"
    assert target.url == "https://orders-804214596321.europe-west1.run.app/v1"
    assert not target.load_balanced and not target.health_monitor
    assert target.google_id_token and target.audience == "https://orders-804214596321.europe-west1.run.app"
    assert target.connect_timeout_ms is None and target.io_timeout_ms is None


def test_load_balanced_target_with_health_monitor() -> None:
    bundle = bundle_zip(
        {"proxies/default.xml": PROXY_ENDPOINT.format(steps=""), "targets/default.xml": LB_TARGET}
    )
    target = parse_bundle(bundle).target
    assert target is not None
    assert target.servers == ("orders-ew1", "orders-ew4") and target.fallback_servers == ("orders-ew4",)
    assert target.algorithm == "RoundRobin" and target.max_failures == 5 and target.retry_enabled is False
    assert target.health_monitor and target.path == "/v1" and target.url is None
    assert (target.connect_timeout_ms, target.io_timeout_ms) == (1500, 4000)


def test_disabled_health_monitor_does_not_count() -> None:
    disabled = LB_TARGET.replace("<IsEnabled>true</IsEnabled>", "<IsEnabled>false</IsEnabled>")
    target = parse_bundle(bundle_zip({"targets/default.xml": disabled})).target
    assert target is not None and not target.health_monitor


@pytest.mark.parametrize(
    ("steps", "enabled", "rate", "active_rate"),
    [
        (["SA-1"], "true", "30ps", Rate(30, "ps")),
        (["SA-1"], "true", " 600pm ", Rate(600, "pm")),
        (["SA-1"], "false", "30ps", None),  # disabled
        ([], "true", "30ps", None),  # not attached to any flow
    ],
)
def test_spike_arrest_counts_only_when_enabled_and_attached(
    steps: list[str], enabled: str, rate: str, active_rate: Rate | None
) -> None:
    config = parse_bundle(direct_bundle(steps, {"SA-1": SPIKE.format(enabled=enabled, rate=rate)}))
    arrest = config.spike_arrest
    assert (arrest.rate if arrest else None) == active_rate
    assert len(config.policies) == 1


def test_spike_arrest_with_a_variable_rate() -> None:
    policy = '<SpikeArrest name="SA-1"><Rate ref="verifyapikey.rate">10ps</Rate></SpikeArrest>'
    arrest = parse_bundle(direct_bundle(["SA-1"], {"SA-1": policy})).spike_arrest
    assert arrest is not None and arrest.rate_ref == "verifyapikey.rate" and arrest.rate == Rate(10, "ps")


def test_response_cache_and_client_auth() -> None:
    policies = {
        "RC-1": CACHE,
        "VA-1": '<VerifyAPIKey name="VA-1"><APIKey ref="request.header.x-api-key"/></VerifyAPIKey>',
    }
    config = parse_bundle(direct_bundle(["VA-1", "RC-1"], policies))
    assert config.response_cache and config.verifies_clients
    assert not parse_bundle(direct_bundle([], policies)).response_cache


def target(name: str, attributes: str = "") -> str:
    return (
        f'<TargetEndpoint name="{name}"{attributes}>'
        f"<HTTPTargetConnection><URL>https://{name}.example</URL></HTTPTargetConnection></TargetEndpoint>"
    )


def test_primary_target_follows_the_unconditional_route_rule() -> None:
    proxy = """<ProxyEndpoint name="default">
      <RouteRule name="beta">
        <Condition>request.header.beta = "1"</Condition><TargetEndpoint>beta</TargetEndpoint>
      </RouteRule>
      <RouteRule name="main"><TargetEndpoint>main</TargetEndpoint></RouteRule>
    </ProxyEndpoint>"""
    files = {
        "proxies/default.xml": proxy,
        "targets/beta.xml": target("beta"),
        "targets/main.xml": target("main"),
    }
    config = parse_bundle(bundle_zip(files))
    assert config.primary_target == "main"
    assert config.target is not None and config.target.url == "https://main.example"


def test_tolerates_broken_files_nesting_namespaces_and_dtds() -> None:
    files = {
        "targets/default.xml": target("a", ' xmlns="urn:x"'),
        "policies/broken.xml": "<SpikeArrest name='x'><Rate>",
        "policies/evil.xml": '<!DOCTYPE x [<!ENTITY a "aa">]><SpikeArrest name="e"><Rate>&a;</Rate>'
        "</SpikeArrest>",
        "resources/jsc/script.js": "var x = 1;",
        "policies/notes.txt": "not xml",
    }
    config = parse_bundle(bundle_zip(files, root="export/orders-v1_rev3/apiproxy"))
    assert config.target is not None and config.target.url == "https://a.example"
    assert config.policies == ()
    notes = " ".join(config.notes)
    assert "policies/broken.xml: not well-formed" in notes
    assert "policies/evil.xml: skipped (DTDs" in notes


def test_oversized_entries_are_skipped() -> None:
    big = "<SpikeArrest name='big'>" + " " * (MAX_FILE_BYTES + 10) + "</SpikeArrest>"
    config = parse_bundle(bundle_zip({"policies/big.xml": big}))
    assert config.policies == ()
    assert any("big.xml: skipped" in note for note in config.notes)


def test_empty_zip_and_zip_without_apiproxy() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w"):
        pass
    empty = parse_bundle(buffer.getvalue())
    assert empty.known and empty.target is None
    other = parse_bundle(bundle_zip({"README.md": "hi"}, root="docs"))
    assert other.targets == () and other.policies == ()


@pytest.mark.parametrize("data", [b"", b"not a zip", b"PK\x03\x04garbage" * 10])
def test_not_a_zip_raises_input_error(data: bytes) -> None:
    with pytest.raises(InputError):
        parse_bundle(data)


def test_unknown_config() -> None:
    assert not UNKNOWN.known and UNKNOWN.target is None and UNKNOWN.spike_arrest is None


@pytest.mark.skipif(not CORPUS_BUNDLES.exists(), reason="shared corpus not present")
@pytest.mark.parametrize(
    ("sample", "url", "spike"),
    [
        ("cloud-run", "@TARGETURL@", None),
        (
            "cloud-function-http-trigger",
            "https://THIS-URL-WILL-BE-REPLACED.a.run.app/apigee-sample-hello",
            None,
        ),
        ("crm-mcp-proxy", "https://TARGETURL/crm-mcp-proxy", None),
        ("spike-arrest", None, Rate(10, "pm")),
    ],
)
def test_real_sample_bundles(sample: str, url: str | None, spike: Rate | None) -> None:
    root = CORPUS_BUNDLES / sample
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in root.rglob("*"):
            if path.is_file():
                archive.write(path, path.relative_to(root).as_posix())
    config = parse_bundle(buffer.getvalue())
    assert (config.target.url if config.target else None) == url
    assert (config.spike_arrest.rate if config.spike_arrest else None) == spike
