"""Cloud Run jobs for the Cloud Run stand-in: ``jobs.run`` starts a real local process.

gatehouse starts its fleet-wide jobs (reconcile, rotate-credentials, latency-tickets) through
``google.cloud.run_v2.JobsClient.run_job``. Here each configured job (``--job NAME=python.module``)
runs as ``python -m python.module`` with the container contract's environment
(``CLOUD_RUN_JOB``, ``CLOUD_RUN_EXECUTION``, ``CLOUD_RUN_TASK_INDEX/COUNT/ATTEMPT``) plus the
request's ``containerOverrides[].env``; one process per task. ``executions.get`` reports the
processes' exit codes the way the API reports task counts.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gatehouse.local.standins.server import ApiError, Call, handles

EXECUTION_TYPE = "type.googleapis.com/google.cloud.run.v2.Execution"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class JobsMixin:
    """Handlers for ``run.projects.locations.jobs.run`` and ``...jobs.executions.get``."""

    jobs: dict[str, str]  # job id -> python module
    job_log_dir: Path | None
    state: dict[str, Any]
    _processes: dict[str, list[subprocess.Popen[bytes]]]

    def _job_module(self, name: str) -> str:
        job_id = name.rsplit("/", 1)[-1]
        module = self.jobs.get(job_id)
        if module is None:
            raise ApiError(404, f"Resource '{job_id}' of kind 'JOB' in region does not exist.", "NOT_FOUND")
        return module

    @handles("POST", "run.projects.locations.jobs.run")
    def run_job(self, call: Call) -> dict[str, Any]:
        name = call.params["name"]
        module = self._job_module(name)
        body = call.json() or {}
        overrides = body.get("overrides") or {}
        env: dict[str, str] = {}
        for container in overrides.get("containerOverrides") or []:
            for var in container.get("env") or []:
                env[str(var["name"])] = str(var.get("value", ""))
        task_count = int(overrides.get("taskCount") or 1)
        job_id = name.rsplit("/", 1)[-1]
        execution = f"{name}/executions/{job_id}-{secrets.token_hex(3)}"
        processes = []
        for index in range(task_count):
            task_env = {
                **env,
                "CLOUD_RUN_JOB": job_id,
                "CLOUD_RUN_EXECUTION": execution.rsplit("/", 1)[-1],
                "CLOUD_RUN_TASK_INDEX": str(index),
                "CLOUD_RUN_TASK_COUNT": str(task_count),
                "CLOUD_RUN_TASK_ATTEMPT": "0",
            }
            log = None
            if self.job_log_dir:
                self.job_log_dir.mkdir(parents=True, exist_ok=True)
                log = open(self.job_log_dir / f"{execution.rsplit('/', 1)[-1]}-{index}.log", "ab")  # noqa: SIM115
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", module],
                    env={**os.environ, **task_env},
                    stdin=subprocess.DEVNULL,
                    stdout=log or subprocess.DEVNULL,
                    stderr=subprocess.STDOUT,
                )
            )
            if log:
                log.close()
        self._processes[execution] = processes
        record = {
            "name": execution,
            "job": job_id,
            "createTime": _now(),
            "startTime": _now(),
            "taskCount": task_count,
            "parallelism": task_count,
            "uid": secrets.token_hex(8),
        }
        self.state.setdefault("executions", {})[execution] = record
        return {
            "name": f"{name.rsplit('/jobs/', 1)[0]}/operations/{secrets.token_hex(8)}",
            "metadata": {"@type": EXECUTION_TYPE, **record},
            "done": False,
        }

    @handles("GET", "run.projects.locations.jobs.executions.get")
    def get_execution(self, call: Call) -> dict[str, Any]:
        name = call.params["name"]
        record = self.state.get("executions", {}).get(name)
        if record is None:
            raise ApiError(404, f"Execution '{name}' not found.", "NOT_FOUND")
        codes = [p.poll() for p in self._processes.get(name, [])]
        out = dict(record)
        out["runningCount"] = sum(1 for c in codes if c is None)
        out["succeededCount"] = sum(1 for c in codes if c == 0)
        out["failedCount"] = sum(1 for c in codes if c not in (None, 0))
        if codes and all(c is not None for c in codes):
            out["completionTime"] = _now()
        return out

    def stop_jobs(self) -> None:
        for processes in self._processes.values():
            for p in processes:
                if p.poll() is None:
                    p.terminate()
                    p.wait(timeout=10)
