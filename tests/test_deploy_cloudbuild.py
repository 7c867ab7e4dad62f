"""cloudbuild.yaml, checked by parsing it (PyYAML).

CI must run exactly the README's test command, use builder images pinned to a version, push the
application image under an immutable tag (the commit SHA), apply Terraform only when asked
(_APPLY=true) and finish with a smoke check that publishes a reconcile/plan command and finds its
log line by request id.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CLOUDBUILD = ROOT / "cloudbuild.yaml"
README = ROOT / "README.md"

IMMUTABLE_TAG = re.compile(r":\$\{?(COMMIT_SHA|SHORT_SHA)\}?$")


def build() -> dict[str, Any]:
    loaded = yaml.safe_load(CLOUDBUILD.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def steps() -> dict[str, dict[str, Any]]:
    result = {}
    for step in build()["steps"]:
        assert "id" in step, f"step without id: {step.get('name')}"
        result[step["id"]] = step
    return result


def script(step: dict[str, Any]) -> str:
    """Everything the step runs, as one text (entrypoint + args)."""
    return "\n".join([str(step.get("entrypoint", "")), *map(str, step.get("args", []))])


def readme_test_command() -> str:
    """The `make test` line of the README's "Two commands" code block, without its comment."""
    text = README.read_text(encoding="utf-8")
    section = re.search(r"^## Two commands\n(.*?)(?=^## )", text, flags=re.MULTILINE | re.DOTALL)
    assert section, "README has no '## Two commands' section"
    block = re.search(r"```[a-z]*\n(.*?)```", section[1], flags=re.DOTALL)
    assert block, "the 'Two commands' section has no code block"
    lines = [line.split("#", 1)[0].strip() for line in block[1].splitlines() if "make test" in line]
    assert len(lines) == 1, lines
    return lines[0]


def runs_command(text: str, command: str) -> bool:
    """`command` is run on a line of its own or chained with && / ;."""
    pattern = rf"(^|\n|&&|;)\s*{re.escape(command)}\s*($|\n|&&|;)"
    return re.search(pattern, text) is not None


def test_readme_command_extraction() -> None:
    assert readme_test_command() == "make test"
    assert runs_command("apt-get update\nmake test\n", "make test")
    assert not runs_command("echo make test later", "make test")


def test_the_test_step_runs_the_readme_test_command() -> None:
    command = readme_test_command()
    runners = [sid for sid, step in steps().items() if runs_command(script(step), command)]
    assert runners == ["test"], runners


def test_lint_and_type_check_steps() -> None:
    all_steps = steps()
    assert "ruff check" in script(all_steps["lint"]) and "ruff format --check" in script(all_steps["lint"])
    assert "mypy" in script(all_steps["typecheck"])


def _pinned(image: str) -> bool:
    if re.search(r"@sha256:[0-9a-f]{64}$", image):
        return True
    name, _, tag = image.rpartition(":")
    if not name or "/" in tag:  # no tag at all (the ':' belonged to a registry port)
        return False
    return tag != "latest" and re.match(r"v?\d+\.\d+\.\d+", tag) is not None  # major.minor.patch


def test_pin_check_itself() -> None:
    assert _pinned("python:3.11.14-slim-bookworm")
    assert _pinned("gcr.io/google.com/cloudsdktool/cloud-sdk:581.0.0-slim")
    assert _pinned("gcr.io/cloud-builders/docker@sha256:" + "a" * 64)
    for loose in ("gcr.io/cloud-builders/docker", "python:3.11-slim", "hashicorp/terraform:latest", "x:slim"):
        assert not _pinned(loose), loose


def test_every_step_image_is_pinned() -> None:
    for sid, step in steps().items():
        assert _pinned(step["name"]), f"step {sid}: {step['name']} is not pinned to a version or digest"


def _app_images() -> list[str]:
    text = CLOUDBUILD.read_text(encoding="utf-8")
    return re.findall(r"[\w.${}-]+-docker\.pkg\.dev/[^\s\"',\]]+", text)


def test_application_image_tag_is_immutable() -> None:
    images = _app_images()
    assert images, "no Artifact Registry image in cloudbuild.yaml"
    for image in images:
        assert IMMUTABLE_TAG.search(image), f"{image} is not tagged with the commit SHA"
    assert ":latest" not in CLOUDBUILD.read_text(encoding="utf-8")
    build_step, push_step = steps()["build"], steps()["push"]
    assert "--tag" in script(build_step) and "deploy/Dockerfile" in script(build_step)
    assert any(IMMUTABLE_TAG.search(str(arg)) for arg in push_step["args"])
    assert set(push_step["waitFor"]) >= {"build", "lint", "typecheck", "test"}, "push only after the checks"
    for image in build().get("images", []):
        assert IMMUTABLE_TAG.search(image)
    plan = script(steps()["terraform-plan"])
    assert re.search(r'-var="image=[^"]+:\$COMMIT_SHA"', plan), "terraform deploys the image just pushed"


def test_terraform_plans_always_and_applies_only_with_apply_true() -> None:
    all_steps = steps()
    assert build()["substitutions"]["_APPLY"] == "false"
    plan, apply = script(all_steps["terraform-plan"]), script(all_steps["terraform-apply"])
    assert "terraform init" in plan and "terraform plan" in plan and "-out=tfplan" in plan
    assert "terraform apply" not in plan
    guard = re.search(r'if \[ "\$\{_APPLY\}" != "true" \]; then(.*?)fi', apply, flags=re.DOTALL)
    assert guard and "exit 0" in guard[1], "apply must stop unless _APPLY=true"
    assert apply.index("exit 0") < apply.index("terraform apply")
    assert "terraform apply -input=false tfplan" in apply
    assert all_steps["terraform-apply"]["waitFor"] == ["terraform-plan"]
    for step in (all_steps["terraform-plan"], all_steps["terraform-apply"]):
        assert step.get("dir") == "deploy/terraform"


def test_smoke_check_publishes_a_plan_command_and_waits_for_its_log_line() -> None:
    smoke = steps()["smoke"]
    text = script(smoke)
    assert smoke["waitFor"] == ["terraform-apply"]
    assert "gcloud pubsub topics publish" in text
    for key in (
        '\\"command\\":\\"reconcile\\"',
        '\\"mode\\":\\"plan\\"',
        '\\"request_id\\"',
        '\\"service\\"',
    ):
        assert key in text, key
    assert "gcloud logging read" in text
    assert 'jsonPayload.message=~\\"reconcile plan\\"' in text
    assert 'jsonPayload.request_id=\\"$$request_id\\"' in text
    attempts = re.search(r"seq 1 (\d+)", text)
    pause = re.search(r"sleep (\d+)", text)
    assert attempts and pause
    assert 90 <= int(attempts[1]) * int(pause[1]) <= 180, "retry for about two minutes"


@pytest.mark.parametrize("step_id", ["install", "lint", "typecheck", "test"])
def test_python_steps_share_one_interpreter_path(step_id: str) -> None:
    """The .venv made in `install` is reused: every Python step uses python:3.11.<same patch>."""
    versions = {
        re.match(r"python:(3\.11\.\d+)", steps()[s]["name"]) for s in ("install", "lint", "typecheck", "test")
    }
    assert all(versions) and len({v[1] for v in versions if v}) == 1
    assert steps()[step_id]["name"].startswith("python:3.11.")
