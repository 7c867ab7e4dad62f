"""Waves: which proxies a rollout changes first.

``GATEHOUSE_ROLLOUT_WAVES`` lists cumulative wave sizes, each an absolute count or a percentage of
the fleet (default ``1,10%,50%,100%``): wave 1 changes one proxy, wave 2 brings the total to 10%,
and so on; a list that stops short of 100% gets a last wave for the rest.

The order spreads the first waves across profiles, environments and teams, and across busy and
quiet proxies: each next proxy is the one that adds the most values not yet covered, ties going to
the busier proxy (it judges faster), then to the name (deterministic). So wave 1 is the busiest
proxy, and by wave 2 every profile, environment, team and both traffic bands have a member, as far
as its size allows. Quiet means a tenth of the median traffic or less.

Pure module.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from gatehouse.errors import InputError

DEFAULT_WAVES = "1,10%,50%,100%"
# deploys one tick makes in one environment (``GATEHOUSE_ROLLOUT_MAX_DEPLOYS_PER_TICK``): a wave
# bigger than that is deployed over several ticks and judged once all of it is deployed
DEFAULT_MAX_DEPLOYS = 100
_STEP = re.compile(r"^\s*(\d{1,7})(%?)\s*$")


@dataclass(frozen=True)
class Step:
    value: int
    percent: bool

    def cumulative(self, total: int) -> int:
        if not self.percent:
            return min(self.value, total)
        return min(total, math.ceil(total * self.value / 100))

    def __str__(self) -> str:
        return f"{self.value}{'%' if self.percent else ''}"


def parse_waves(text: str) -> tuple[Step, ...]:
    """``"1,10%,50%,100%"`` -> steps; InputError for anything else (empty, 0, >100%, decreasing
    percentages or counts)."""
    parts = [p for p in text.split(",")] if text.strip() else []
    if not parts:
        raise InputError("GATEHOUSE_ROLLOUT_WAVES is empty; expected e.g. 1,10%,50%,100%")
    steps: list[Step] = []
    for part in parts:
        found = _STEP.match(part)
        if not found:
            raise InputError(
                f"GATEHOUSE_ROLLOUT_WAVES: {part.strip()[:20]!r} is not a count or a percentage "
                "(e.g. 5 or 10%)"
            )
        step = Step(int(found.group(1)), bool(found.group(2)))
        if step.value == 0 or (step.percent and step.value > 100):
            raise InputError(f"GATEHOUSE_ROLLOUT_WAVES: {step} is outside 1..100% / at least 1")
        previous = [s for s in steps if s.percent == step.percent]
        if previous and previous[-1].value >= step.value:
            raise InputError(f"GATEHOUSE_ROLLOUT_WAVES: sizes must grow ({previous[-1]} then {step})")
        steps.append(step)
    if not (steps[-1].percent and steps[-1].value == 100):
        steps.append(Step(100, True))
    return tuple(steps)


@dataclass(frozen=True)
class Member:
    """One proxy the rollout changes, with what the spread looks at."""

    proxy: str
    service: str  # projects/P/locations/R/services/S
    profile: str
    environments: tuple[str, ...]
    team: str
    traffic: float = 0.0  # requests in the last window; 0 when unknown

    def values(self, busy: bool) -> set[str]:
        return {
            f"profile:{self.profile}",
            f"team:{self.team}",
            f"traffic:{'busy' if busy else 'quiet'}",
            *(f"env:{e}" for e in self.environments),
        }


def order(members: Iterable[Member]) -> list[Member]:
    """Greedy coverage order (module docstring)."""
    pool = sorted(members, key=lambda m: (-m.traffic, m.proxy))
    if not pool:
        return []
    traffic = sorted(m.traffic for m in pool)
    median = traffic[len(traffic) // 2]
    # quiet: a tenth of the typical proxy's traffic or less (or none); it judges slowly, if at all,
    # but its callers count as much as a busy proxy's
    busy = {m.proxy: m.traffic > 0 and m.traffic > median / 10 for m in pool}
    values = {m.proxy: m.values(busy[m.proxy]) for m in pool}
    covered: set[str] = set()
    ordered: list[Member] = []
    # re-scan only while something new can still be covered: after that the order is (traffic, name)
    while pool:
        best_index, best_gain = 0, -1
        for index, member in enumerate(pool):
            gain = len(values[member.proxy] - covered)
            if gain > best_gain:
                best_index, best_gain = index, gain
        if best_gain <= 0:
            ordered.extend(pool)
            break
        chosen = pool.pop(best_index)
        covered |= values[chosen.proxy]
        ordered.append(chosen)
    return ordered


def plan_waves(members: Sequence[Member], steps: Sequence[Step]) -> list[list[Member]]:
    """Split the ordered fleet into waves of the cumulative sizes ``steps`` give; a step that adds
    nothing (10% of 5 proxies after wave 1 of 1) is skipped, never an empty wave."""
    ordered = order(members)
    total = len(ordered)
    waves: list[list[Member]] = []
    done = 0
    for step in steps:
        upto = max(step.cumulative(total), done)
        if upto > done:
            waves.append(ordered[done:upto])
            done = upto
    if done < total:
        waves.append(ordered[done:])
    return waves


def take_deploys(members: Sequence[Member], per_environment: int) -> list[Member]:
    """The members (in the given order) one tick deploys: each environment gets at most
    ``per_environment`` deploys, so a big wave never makes more concurrent deployment changes in
    an environment, nor more management calls in a minute, than that bound allows; the rest wait
    for the next tick. A member is taken only when every one of its environments has room."""
    if per_environment < 1:
        raise InputError("GATEHOUSE_ROLLOUT_MAX_DEPLOYS_PER_TICK must be at least 1")
    used: dict[str, int] = {}
    taken: list[Member] = []
    for member in members:
        if all(used.get(env, 0) < per_environment for env in member.environments):
            taken.append(member)
            for env in member.environments:
                used[env] = used.get(env, 0) + 1
    return taken
