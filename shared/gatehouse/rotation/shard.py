"""Split the targets among the tasks of one Cloud Run job execution.

Each task gets ``CLOUD_RUN_TASK_INDEX`` (0-based) and ``CLOUD_RUN_TASK_COUNT``; a target belongs to
task ``sha256(secret name) mod count``. The assignment is stable across runs, processes and Python
versions (``hash()`` is salted per process, so it would not do) and needs no coordination: every
task lists the same secrets and keeps its own share. A retried task gets the same share again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

from gatehouse.errors import InputError


def shard_of(secret: str, count: int) -> int:
    digest = hashlib.sha256(secret.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count


def select(secrets: Iterable[str], index: int, count: int) -> list[str]:
    """The secrets that task ``index`` of ``count`` handles, in input order."""
    check(index, count)
    return [s for s in secrets if shard_of(s, count) == index]


def check(index: int, count: int) -> None:
    if count < 1 or not 0 <= index < count:
        raise InputError(f"shard {index} of {count}: need 0 <= index < count")


def from_env(env: Mapping[str, str]) -> tuple[int, int]:
    """``(CLOUD_RUN_TASK_INDEX, CLOUD_RUN_TASK_COUNT)``, ``(0, 1)`` outside a Cloud Run job."""
    raw_index = env.get("CLOUD_RUN_TASK_INDEX", "0")
    raw_count = env.get("CLOUD_RUN_TASK_COUNT", "1")
    if not (raw_index.isdigit() and raw_count.isdigit()):
        raise InputError(
            f"CLOUD_RUN_TASK_INDEX={raw_index!r} / CLOUD_RUN_TASK_COUNT={raw_count!r} are not numbers"
        )
    index, count = int(raw_index), int(raw_count)
    check(index, count)
    return index, count
