"""``make test``: the whole suite as three pytest runs side by side, so that it stays under 10 minutes.

Most of the stack tests' time is waiting (deploys watched to READY, Pub/Sub deliveries, and the
rollout tests' whole analytics minutes: about 6 minutes of them), while the unit tests keep the
cores busy. The groups: the rollout end-to-end tests, every other stack test, the unit tests; each
has its own pytest base directory and its own local stack. Each group's output is printed when it ends, with a
progress line every 30 s meanwhile; the exit status is the first failing group's.

Usage: ``python tools/pytest_groups.py [PYTEST ARGS...]`` (the args go to both groups).
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SLOW_STACK = "tests/test_rollout_e2e.py"  # waits for whole analytics minutes: ~6 min, mostly idle
PROGRESS_EVERY = 30.0


def groups(extra: list[str]) -> dict[str, list[list[str]]]:
    """Group name -> the pytest runs it makes, one after the other."""
    return {
        "rollouts": [["-m", "stack", SLOW_STACK, *extra]],
        "stack": [["-m", "stack", "--ignore", SLOW_STACK, *extra]],
        "unit": [["-m", "not stack", *extra]],
    }


def main(argv: list[str]) -> int:
    work = Path(tempfile.mkdtemp(prefix="gatehouse-tests-"))
    started = time.monotonic()
    running: dict[str, tuple[subprocess.Popen[bytes], Path, list[list[str]], int]] = {}

    def launch(name: str, runs: list[list[str]], index: int) -> None:
        log = work / f"{name}-{index}.log"
        command = [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--basetemp",
            str(work / f"tmp-{name}-{index}"),
            *runs[index],
        ]
        with log.open("wb") as out:
            proc = subprocess.Popen(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
        running[name] = (proc, log, runs, index)
        print(f"[{time.monotonic() - started:5.0f}s] {name}: pytest {shlex.join(runs[index])}", flush=True)

    for name, runs in groups(argv).items():
        launch(name, runs, 0)
    status = 0
    last_progress = time.monotonic()
    while running:
        time.sleep(0.5)
        for name, (proc, log, runs, index) in list(running.items()):
            code = proc.poll()
            if code is None:
                continue
            del running[name]
            elapsed = time.monotonic() - started
            print(f"\n[{elapsed:5.0f}s] {name}: pytest {shlex.join(runs[index])} exited {code}", flush=True)
            sys.stdout.write(log.read_text(errors="replace"))
            sys.stdout.flush()
            # 5: no tests collected (a marker expression that selects none), not a failure
            if code not in (0, 5):
                status = status or code
            if index + 1 < len(runs):  # the group's later runs go on: every failure is reported
                launch(name, runs, index + 1)
        if running and time.monotonic() - last_progress >= PROGRESS_EVERY:
            last_progress = time.monotonic()
            print(
                f"[{last_progress - started:5.0f}s] still running: {', '.join(running)}",
                flush=True,
            )
    print(f"\n[{time.monotonic() - started:5.0f}s] all groups done: {'passed' if not status else 'FAILED'}")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
