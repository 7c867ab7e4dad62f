"""The layering rules of DESIGN.md hold: pure modules import no cloud SDK, HTTP client or socket.

import-linter checks the contract in pyproject.toml; this test runs it and also checks that the
contract names every pure module, so a new planning module cannot slip out of it unnoticed."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# modules that must stay pure (decoding, contract, rendering, planning, reports)
PURE_PACKAGES = {
    "gatehouse.registration": {"plan", "openapi"},
    "gatehouse.rotation": {
        "material",
        "settings",
        "target",
        "state",
        "generate",
        "plan",
        "consumers",
        "report",
        "shard",
    },
    "gatehouse.tickets": {
        "settings",
        "fingerprint",
        "evidence",
        "diagnosis",
        "proxyconfig",
        "proposal",
        "render",
        "lifecycle",
        "plan",
    },
}
PURE_MODULES = {
    "gatehouse.events",
    "gatehouse.exposure",
    "gatehouse.profiles",
    "gatehouse.bundle",
    "gatehouse.ports",
    "gatehouse.rotation.ports",
    "gatehouse.tickets.ports",
}


def _contract() -> dict[str, object]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contracts = config["tool"]["importlinter"]["contracts"]
    return next(c for c in contracts if c["type"] == "forbidden")


def test_the_contract_lists_every_pure_module() -> None:
    listed = set(_contract()["source_modules"])  # type: ignore[arg-type]
    expected = PURE_MODULES | {f"{pkg}.{m}" for pkg, mods in PURE_PACKAGES.items() for m in mods}
    assert expected <= listed, f"missing from the import-linter contract: {sorted(expected - listed)}"
    forbidden = set(_contract()["forbidden_modules"])  # type: ignore[arg-type]
    assert {"google", "grpc", "requests", "urllib3", "httpx", "http", "socket"} <= forbidden


def test_import_contracts_are_kept() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(lint), "--no-cache"], capture_output=True, text=True, cwd=ROOT, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert "0 broken" in result.stdout
