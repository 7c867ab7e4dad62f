"""The distribution: one import name, `gatehouse`, and a CLI that runs from a venv outside the repo.

Builds the real wheel (pip, isolated build: the setuptools that pyproject.toml asks for), reads
its metadata, installs it into a fresh venv in a temporary folder and runs the console script
from there, so that nothing on the repository's sys.path can stand in for the installed package.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# the venv must see only what was installed into it, not a PYTHONPATH pointing at a checkout
CLEAN_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("wheel")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=CLEAN_ENV,
    )
    assert build.returncode == 0, build.stderr
    (built,) = out.glob("gatehouse-*.whl")
    return built, build.stdout + build.stderr


def test_the_wheel_has_one_top_level_name(wheel: tuple[Path, str]) -> None:
    built, _ = wheel
    with zipfile.ZipFile(built) as archive:
        names = archive.namelist()
        (top_level,) = [n for n in names if n.endswith(".dist-info/top_level.txt")]
        assert archive.read(top_level).decode().split() == ["gatehouse"]
    roots = {name.split("/", 1)[0] for name in names if not name.split("/", 1)[0].endswith(".dist-info")}
    assert roots == {"gatehouse"}
    assert "gatehouse/profiles.yaml" in names, "package data travels with the package"
    assert "gatehouse/py.typed" in names
    assert "gatehouse/local/stack.py" in names, "gatehouse local up is a product feature"
    assert not any(n.startswith(("functions/", "jobs/", "shared/", "deploy/")) for n in names)


def test_building_prints_no_setuptools_deprecation(wheel: tuple[Path, str]) -> None:
    _, output = wheel
    for marker in ("Deprecat", "BuildBackendWarning", "SetuptoolsWarning"):
        assert marker not in output, output


def test_the_installed_cli_runs_from_a_venv_outside_the_repo(wheel: tuple[Path, str], tmp_path: Path) -> None:
    built, _ = wheel
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = next((venv / "lib").glob("python3*/site-packages"))
    # The dependencies come from this interpreter's environment (the lock file's versions); a plain
    # path in a .pth is appended after site-packages and does not load that environment's own .pth
    # files, so the editable install of the repository stays invisible.
    deps = [p for p in sys.path if p.endswith("site-packages")]
    (site / "zz_deps.pth").write_text("\n".join(deps) + "\n", encoding="utf-8")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(venv / "bin" / "python"),
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            str(built),
        ],
        check=True,
        timeout=300,
        capture_output=True,
        env=CLEAN_ENV,
    )
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import gatehouse, sys; print(gatehouse.__file__)"],
        cwd=outside,
        env=CLEAN_ENV,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert where.stdout.strip().startswith(str(site)), where.stdout
    for generic in ("shared", "functions", "jobs", "deploy"):
        probe = subprocess.run(
            [str(venv / "bin" / "python"), "-c", f"import {generic}"],
            cwd=outside,
            env=CLEAN_ENV,
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        assert probe.returncode != 0, f"{generic} is importable from the installed gatehouse"
    cli = subprocess.run(
        [str(venv / "bin" / "gatehouse"), "--help"],
        check=False,
        cwd=outside,
        env=CLEAN_ENV,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cli.returncode == 0, cli.stderr
    assert "render" in cli.stdout and "Traceback" not in cli.stderr
    render = subprocess.run(
        [
            str(venv / "bin" / "gatehouse"),
            "render",
            str(ROOT / "tests/fixtures/services/v2-apikey.json"),
            "--out",
            str(outside / "bundle"),
        ],
        check=False,
        cwd=outside,
        env=CLEAN_ENV,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert render.returncode == 0, render.stderr
    assert json.loads(render.stdout)["profile"] == "apikey"
    assert list((outside / "bundle").rglob("*.xml")), "the bundle was written"
