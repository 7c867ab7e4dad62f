"""Cloud Run job ``rotate-credentials``: daily, age-gated rotation of service-account keys and
generated secrets declared on Secret Manager secrets (README "Rotation").

Honours ``CLOUD_RUN_TASK_INDEX/COUNT`` (each task takes a stable share of the targets). Writes the
run report (JSON and Markdown) as a log entry, and to ``GATEHOUSE_ROTATION_REPORT_DIR`` when set.
Exit code: 1 when any target failed or was refused (Cloud Run retries the task; the retry resumes
where the rotation stopped), 2 for bad settings.
"""

from __future__ import annotations

import os
import sys
from datetime import datetime
from pathlib import Path

from gatehouse.config import load_settings
from gatehouse.errors import InputError
from gatehouse.logging import bound, configure, event, get_logger

_log = get_logger("jobs.rotation")


def main() -> int:
    configure()
    try:
        settings = load_settings()
        from gatehouse import runtime
        from gatehouse.rotation import shard
        from gatehouse.rotation.settings import RotationSettings

        rotation = RotationSettings.from_env(os.environ)
        task = shard.from_env(os.environ)
        ports = runtime.rotation_ports(settings, rotation)
    except InputError as exc:
        event(_log, "invalid settings", level=40, error=str(exc))
        return 2
    from gatehouse.rotation.job import run
    from gatehouse.rotation.report import render_json, render_markdown, to_dict

    plan = os.environ.get("GATEHOUSE_ROTATION_MODE", "apply") == "plan"
    secret = os.environ.get("GATEHOUSE_ROTATION_SECRET") or None
    force_before = None
    if os.environ.get("GATEHOUSE_ROTATION_FORCE_BEFORE"):
        try:
            force_before = datetime.fromisoformat(os.environ["GATEHOUSE_ROTATION_FORCE_BEFORE"])
        except ValueError:
            event(
                _log,
                "invalid settings",
                level=40,
                error="GATEHOUSE_ROTATION_FORCE_BEFORE is not an ISO timestamp",
            )
            return 2
    with bound(component="rotate-credentials", execution=os.environ.get("CLOUD_RUN_EXECUTION")):
        # a freeze holds the scheduled run; a forced rotation (a leak) or one secret still goes
        if not plan and secret is None and force_before is None:
            frozen = runtime.frozen(settings)
            if frozen is not None:
                event(_log, "rotation held by a freeze", until=frozen.until, reason=frozen.reason)
                return 0
        report = run(
            ports,
            rotation,
            plan_only=plan,
            shard=task,
            secret=secret,
            force_before=force_before,
            workers=rotation.workers,
        )
        event(_log, "rotation report", report=to_dict(report), counts=report.counts())
        out = os.environ.get("GATEHOUSE_ROTATION_REPORT_DIR")
        if out:
            directory = Path(out)
            directory.mkdir(parents=True, exist_ok=True)
            (directory / f"{report.run_id}.json").write_text(render_json(report))
            (directory / f"{report.run_id}.md").write_text(render_markdown(report))
    return int(report.exit_code)


if __name__ == "__main__":
    sys.exit(main())
