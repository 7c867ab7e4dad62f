"""Start, wait for and stop the background processes of the local stack.

Every process gets its own session (process group) so that stopping it also stops the children
it spawned (``gcloud`` starts a JVM for each emulator).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from gatehouse.errors import InputError

# Popen objects of the children this process started: kept so that they can be reaped (and so that
# Python does not warn about dropping a running child)
_children: dict[int, subprocess.Popen[bytes]] = {}


class StackError(RuntimeError):
    """A process of the local stack could not be started."""


class StackInputError(StackError, InputError):
    """The stack is not in the state the command needs (its state file is unreadable, its directory
    cannot be written, it is already running): the user must act, the CLI exits 2."""


class StackNotRunningError(StackInputError):
    """There is no stack in the directory, or nothing answers on the endpoints it recorded."""


@dataclass(frozen=True)
class Managed:
    """A background process the stack started and must stop."""

    name: str
    pid: int
    port: int
    log: str

    @property
    def host_port(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def spawn(
    name: str, argv: Sequence[str], *, port: int, log_dir: Path, env: Mapping[str, str] | None = None
) -> Managed:
    """Start ``argv`` detached in its own session, output appended to ``log_dir/<name>.log``."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
    _children[proc.pid] = proc
    return Managed(name=name, pid=proc.pid, port=port, log=str(log_path))


def alive(pid: int) -> bool:
    child = _children.get(pid)
    if child is not None:
        return child.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child still answers kill(0); reap it if it is ours
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    return True


def wait_http(managed: Managed, path: str = "/", timeout: float = 60.0) -> None:
    """Wait until ``managed`` answers HTTP on its port (any status counts as up)."""
    deadline = time.monotonic() + timeout
    url = managed.url + path
    while time.monotonic() < deadline:
        if not alive(managed.pid):
            raise StackError(
                f"{managed.name} exited during start-up; see {managed.log}:\n{tail(managed.log)}"
            )
        try:
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310 - loopback URL we built
                return
        except urllib.error.HTTPError:
            return
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    stop(managed)
    raise StackError(f"{managed.name} did not answer on {url} within {timeout:.0f}s; see {managed.log}")


def stop(managed: Managed | int, timeout: float = 10.0) -> None:
    """Stop the process group of ``managed``: SIGTERM, then SIGKILL after ``timeout``."""
    pid = managed if isinstance(managed, int) else managed.pid
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive(pid):
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    child = _children.pop(pid, None)
    if child is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=1)
    else:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def tail(path: str, lines: int = 20) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _gcloud() -> str:
    gcloud = shutil.which("gcloud")
    if not gcloud:
        raise StackError(
            "gcloud not found: install the Google Cloud CLI and the emulators "
            "(gcloud components install pubsub-emulator cloud-firestore-emulator, or the apt packages "
            "google-cloud-cli-pubsub-emulator google-cloud-cli-firestore-emulator)"
        )
    return gcloud


def start_pubsub_emulator(log_dir: Path, port: int | None = None) -> Managed:
    """The real Pub/Sub emulator from the Google Cloud CLI."""
    port = port or free_port()
    argv = [_gcloud(), "beta", "emulators", "pubsub", "start", f"--host-port=127.0.0.1:{port}", "--quiet"]
    managed = spawn("pubsub-emulator", argv, port=port, log_dir=log_dir)
    wait_http(managed, timeout=90)
    return managed


def start_firestore_emulator(log_dir: Path, port: int | None = None) -> Managed:
    """The real Firestore emulator (native mode) from the Google Cloud CLI."""
    port = port or free_port()
    argv = [_gcloud(), "beta", "emulators", "firestore", "start", f"--host-port=127.0.0.1:{port}", "--quiet"]
    managed = spawn("firestore-emulator", argv, port=port, log_dir=log_dir)
    wait_http(managed, timeout=90)
    return managed


def start_storage_emulator(
    log_dir: Path, data_dir: Path, project_number: str, port: int | None = None
) -> Managed:
    """gcp-storage-emulator from PyPI (an existing Cloud Storage emulator, the `local` extra brings it);
    clients reach it through STORAGE_EMULATOR_HOST. Objects live in ``data_dir``."""
    port = port or free_port()
    argv = [
        sys.executable,
        "-m",
        "gcp_storage_emulator",
        "--data-dir",
        str(data_dir),
        "start",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--project-number",
        project_number,
        "--quiet",
    ]
    managed = spawn("storage-emulator", argv, port=port, log_dir=log_dir)
    wait_http(managed, timeout=60)
    return managed


def start_python(
    name: str,
    module_args: Sequence[str],
    *,
    port: int,
    log_dir: Path,
    env: Mapping[str, str] | None = None,
    ready_path: str = "/",
    timeout: float = 60.0,
) -> Managed:
    """Start ``python -m ...`` (this interpreter) and wait for it to answer HTTP."""
    managed = spawn(name, [sys.executable, *module_args], port=port, log_dir=log_dir, env=env)
    wait_http(managed, path=ready_path, timeout=timeout)
    return managed
