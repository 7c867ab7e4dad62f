"""deploy/Dockerfile, checked by parsing it (no Docker engine needed).

One small image for every entry point: multi-stage (wheels built in a builder, no build tools in
the final stage), a pinned slim Python 3.11 base, dependencies installed from
requirements/lock.txt, a non-root user, functions-framework serving the function FUNCTION_TARGET
names, and a build context (.dockerignore) that carries only what the image needs.
"""

from __future__ import annotations

import fnmatch
import importlib
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

BUILD_TOOLS = re.compile(r"\b(gcc|g\+\+|cc|clang|make|build-essential|[a-z0-9.+-]+-dev|python3-dev)\b")


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def parse(text: str) -> list[Stage]:
    """Instructions per stage; comments dropped, continuation lines joined."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            pending += line[:-1].rstrip() + " "
            continue
        logical.append(pending + line)
        pending = ""
    stages: list[Stage] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            match = re.fullmatch(
                r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", args.strip(), re.IGNORECASE
            )
            assert match, f"cannot read FROM {args!r}"
            stages.append(Stage(image=match[1], name=match[2]))
        elif keyword != "ARG" or stages:
            assert stages, f"{keyword} before the first FROM"
            stages[-1].instructions.append((keyword, args.strip()))
    return stages


def stages() -> list[Stage]:
    return parse(DOCKERFILE.read_text(encoding="utf-8"))


def test_parser_joins_continuations_and_splits_stages() -> None:
    parsed = parse("FROM a:1 AS one\nRUN x \\\n  # note\n  && y\nFROM b:2\nUSER 1000\n")
    assert [(s.image, s.name) for s in parsed] == [("a:1", "one"), ("b:2", None)]
    assert parsed[0].all("RUN") == ["x && y"]
    assert parsed[1].all("USER") == ["1000"]


def test_is_multi_stage_and_the_final_stage_copies_the_build() -> None:
    parsed = stages()
    assert len(parsed) >= 2
    builder, final = parsed[0], parsed[-1]
    assert builder.name and final.name != builder.name
    assert any(f"--from={builder.name}" in copy for copy in final.all("COPY"))


def test_base_image_is_a_pinned_slim_python_311() -> None:
    images = {s.image for s in stages()}
    assert len(images) == 1, "builder and final stage must share the base (the venv is copied across)"
    image = images.pop()
    assert "$" not in image, "pin the base literally so scanners and reviewers see it"
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-[a-z]+)?(@sha256:[0-9a-f]{64})?", image), image
    assert not image.endswith(":latest")


def test_final_stage_runs_as_a_non_root_user() -> None:
    users = stages()[-1].all("USER")
    assert users, "the final stage must set USER"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}


def test_no_build_tools_in_the_final_stage() -> None:
    final = stages()[-1]
    for keyword, args in final.instructions:
        if keyword == "RUN":
            assert "apt-get install" not in args and "apk add" not in args, args
            assert not BUILD_TOOLS.search(args), args
            assert "pip install" not in args, "install in the builder, copy the venv"
    assert not any("/wheels" in copy for copy in final.all("COPY")), "wheels stay in the builder"


def test_dependencies_come_from_the_lock_file() -> None:
    builder = stages()[0]
    assert any("requirements/lock.txt" in copy for copy in builder.all("COPY"))
    installs = [run for run in builder.all("RUN") if "pip" in run]
    assert installs
    for run in installs:
        for command in re.split(r"&&|;", run):
            if re.search(r"\bpip (install|wheel)\b", command) and "uninstall" not in command:
                assert re.search(r"(--constraint|-c|--requirement|-r)\s+requirements/lock\.txt", command), (
                    command
                )
    assert any("pip wheel" in run for run in installs), "wheels are built in the builder stage"
    lock = (ROOT / "requirements" / "lock.txt").read_text(encoding="utf-8").split()
    assert all(re.fullmatch(r"[A-Za-z0-9_.-]+==[^=\s]+", line) for line in lock), "the lock file pins exactly"


def test_serves_the_cloudevent_function_named_by_function_target() -> None:
    final = stages()[-1]
    env = " ".join(final.all("ENV"))
    assert re.search(r"FUNCTION_SOURCE=\S*/functions/main\.py", env)
    cmd = final.all("CMD")[-1]
    assert "functions-framework" in cmd
    assert "--signature-type=cloudevent" in cmd
    assert "FUNCTION_TARGET" in cmd and "--target" in cmd
    assert '"exec ' in cmd or cmd.startswith("exec") or cmd.startswith('["functions-framework"')
    assert not final.all("ENTRYPOINT"), "jobs override the command; an ENTRYPOINT would get in the way"
    main = importlib.import_module("functions.main")  # the script FUNCTION_SOURCE names
    for target in ("on_run_event", "on_command"):
        assert callable(getattr(main, target))
    copied = " ".join(final.all("COPY"))
    assert "/app/functions" in copied and "/app/jobs" in copied, "the entry scripts sit beside the venv"
    assert re.search(r"FUNCTION_SOURCE=/app/functions/main\.py", env)


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; `!` re-includes."""
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern[1:] if negate else pattern
        pat = pat.rstrip("/")
        if fnmatch.fnmatch(path, pat) or fnmatch.fnmatch(path, pat + "/*") or path.startswith(pat + "/"):
            ignored = not negate
    return ignored


def test_dockerignore_keeps_the_context_to_what_the_image_copies() -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*", "exclude everything, then list what the build needs"
    copied = []
    for stage in stages():
        for copy in stage.all("COPY"):
            parts = [p for p in shlex.split(copy) if not p.startswith("--")]
            if "--from=" not in copy:
                copied.extend(parts[:-1])
    assert copied
    for source in copied:
        assert not _ignored(source, patterns), f"COPY {source} is excluded by .dockerignore"
    for private in (".git", ".venv", "tests", "bench", ".gatehouse", "deploy/terraform", "tools/node"):
        assert _ignored(private, patterns), f"{private} would be sent to the build"
