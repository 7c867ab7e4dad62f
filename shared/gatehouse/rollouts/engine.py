"""Drive a rollout: deploy a wave, bake, judge it, then move on, pause, or restore and halt.

Every step is written to the store before the next external write, under one lease (the
registrar's lease discipline: ``Coordinator.acquire("rollout", ...)``), so a killed tick is
finished by the next one without deploying a proxy twice or leaving one behind:

- ``pending -> deploying`` records the previous revisions and labels *before* any Apigee write;
- ``deploying -> deployed`` after the deploy is READY; a redone deploy finds the revision already
  in place (registration is level-triggered) and deploys nothing;
- a failed wave is marked ``failed`` first, then each proxy ``restored`` after its restore; a
  ticket is opened once (found again by its label after a crash), then the rollout ``halted``.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gatehouse.errors import GatehouseError, InputError, TransientError
from gatehouse.ports import Coordinator
from gatehouse.rollouts import gate
from gatehouse.rollouts.fleet import FleetConfig, difference
from gatehouse.rollouts.model import ACTIVE, Freeze, ProxyState, Rollout
from gatehouse.rollouts.ports import Deployer, GroupedStats, RolloutStore, Tickets
from gatehouse.rollouts.waves import DEFAULT_MAX_DEPLOYS, Member, Step, parse_waves, plan_waves, take_deploys

LEASE_KEY = "gatehouse-rollout"


@dataclass(frozen=True)
class RolloutSettings:
    waves: tuple[Step, ...] = parse_waves("1,10%,50%,100%")
    bake_seconds: float = 900.0
    analytics_delay_seconds: float = 600.0
    thresholds: gate.Thresholds = field(default_factory=gate.Thresholds)
    max_inconclusive: str = "25%"
    lease_seconds: float = 600.0
    max_deploys_per_tick: int = DEFAULT_MAX_DEPLOYS  # per environment

    @property
    def bake(self) -> float:
        # judging before analytics has the data would judge an empty window
        return max(self.bake_seconds, self.analytics_delay_seconds)


class BusyError(TransientError):
    """Another tick holds the rollout lease."""


class RolloutEngine:
    def __init__(
        self,
        store: RolloutStore,
        coordinator: Coordinator,
        deployer: Deployer,
        stats: GroupedStats,
        tickets: Tickets,
        *,
        settings: RolloutSettings = RolloutSettings(),
        clock: Callable[[], float] = time.time,
        holder: str | None = None,
    ) -> None:
        self.store, self.coordinator, self.deployer = store, coordinator, deployer
        self.stats, self.tickets, self.settings, self.clock = stats, tickets, settings, clock
        self.holder = holder or f"rollout-{uuid.uuid4().hex[:8]}"

    # -- records -------------------------------------------------------------------------------

    def fleet(self) -> dict[str, Any]:
        return self.store.get("fleet") or {}

    def config(self, config_id: str) -> FleetConfig:
        doc = self.store.get(f"config/{config_id}")
        if doc is None:
            raise InputError(f"configuration {config_id} is not stored")
        return FleetConfig.from_dict(doc)

    def current(self) -> Rollout | None:
        rid = self.fleet().get("rollout")
        doc = self.store.get(f"rollout/{rid}") if rid else None
        return Rollout.from_dict(doc) if doc else None

    def _save(self, rollout: Rollout) -> None:
        rollout.updated = self.clock()
        self.store.put(f"rollout/{rollout.id}", rollout.to_dict())

    def _put_fleet(self, **changes: Any) -> None:
        self.store.put("fleet", {**self.fleet(), **changes})

    def freeze(self) -> Freeze | None:
        doc = self.fleet().get("freeze")
        f = Freeze.from_dict(doc) if isinstance(doc, Mapping) else None
        return f if f is not None and f.active(self.clock()) else None

    # -- the configuration a proxy renders with -------------------------------------------------

    def running(self, present: FleetConfig) -> FleetConfig:
        """The configuration the fleet runs now (bootstrapping from ``present`` on first use)."""
        fleet = self.fleet()
        if not fleet.get("running"):
            self.store.put(f"config/{present.id}", present.to_dict())
            self._put_fleet(running=present.id)
            return present
        return self.config(str(fleet["running"]))

    def config_for(self, proxy: str, present: FleetConfig) -> FleetConfig:
        """What a deploy of ``proxy`` renders with: the configuration under test once the rollout
        reached the proxy, the running one otherwise (also while a change waits for its rollout)."""
        rollout = self.current()
        if rollout is not None and rollout.state in ACTIVE and rollout.renders_target(proxy):
            return self.config(rollout.target)
        return self.running(present)

    # -- start ----------------------------------------------------------------------------------

    def start(self, present: FleetConfig, members: list[Member]) -> Rollout | None:
        """A rollout from the running configuration to ``present`` over ``members`` (the proxies
        whose bundle it changes); None when nothing is to roll out or one is already active, or
        ``present`` was aborted before (it needs a new configuration, not a retry)."""
        with self._lease():
            source = self.running(present)
            active = self.current()
            fleet = self.fleet()
            if source.id == present.id or (active is not None and active.state in ACTIVE):
                return None
            if present.id in (fleet.get("rejected") or []):
                return None
            self.store.put(f"config/{present.id}", present.to_dict())
            now = self.clock()
            rollout = Rollout(
                id=f"{present.id}-{int(now)}",
                source=source.id,
                target=present.id,
                waves=[str(s) for s in self.settings.waves],
                created=now,
            )
            for index, wave in enumerate(plan_waves(members, self.settings.waves)):
                for m in wave:
                    rollout.proxies[m.proxy] = ProxyState(m, index)
            if not rollout.proxies:
                rollout.state = "completed"
                rollout.reason = "no proxy renders differently"
            rollout.note(now, f"started {source.id} -> {present.id}, {len(rollout.proxies)} proxies")
            self._save(rollout)
            self._put_fleet(rollout=rollout.id, **({"running": present.id} if not rollout.proxies else {}))
            return rollout

    # -- tick -----------------------------------------------------------------------------------

    def tick(self, *, accept_inconclusive: bool = False) -> Rollout | None:
        with self._lease():
            rollout = self.current()
            if rollout is None:
                return None
            if rollout.state == "halted":
                self._finish_halt(rollout)  # a crash may have interrupted the restore
                return rollout
            if rollout.state == "paused" and accept_inconclusive:
                rollout.state = "running"
                rollout.note(self.clock(), f"wave {rollout.wave + 1} accepted by a person")
                self._next_wave(rollout)
                return rollout
            if rollout.state != "running" or self.freeze() is not None:
                return rollout
            self._step(rollout)
            return rollout

    def _step(self, rollout: Rollout) -> None:
        members = rollout.in_wave(rollout.wave)
        target = self.config(rollout.target)
        waiting = [p for p in members if p.state in ("pending", "deploying")]
        if waiting:
            allowed = {
                m.proxy for m in take_deploys([p.member for p in waiting], self.settings.max_deploys_per_tick)
            }
            for p in waiting:
                if p.member.proxy not in allowed:
                    continue  # over this tick's deploys in one of its environments: the next tick
                if p.state == "pending":
                    p.previous, p.previous_labels = self.deployer.current(p.member.proxy)
                    p.state = "deploying"
                    self._save(rollout)
                try:
                    p.revision = self.deployer.deploy(p.member, target)
                except TransientError:
                    raise  # still deploying: the next tick tries again (registration is idempotent)
                except GatehouseError as exc:
                    # READY never came: the gate fails this proxy without waiting for traffic
                    p.state = "deployed"
                    p.verdict = gate.Verdict("fail", f"deploy failed: {exc}", gate.Window(), gate.Window())
                else:
                    p.state = "deployed"
                p.deployed_at = self.clock()
                p.deploys += 1
                self._save(rollout)
            if len(allowed) < len(waiting):
                return  # the rest of the wave next tick; it is judged once all of it is deployed
            rollout.wave_deployed_at = self.clock()
            rollout.note(rollout.wave_deployed_at, f"wave {rollout.wave + 1} deployed ({len(members)})")
            self._save(rollout)
            return
        if rollout.wave_deployed_at is None:
            # the tick that deployed the wave died before noting it: the proxies know when
            rollout.wave_deployed_at = max((p.deployed_at or self.clock()) for p in members)
            self._save(rollout)
        deployed_at = rollout.wave_deployed_at
        if self.clock() < self.judge_at(deployed_at):
            return  # baking
        verdicts = self._judge(members, deployed_at)
        judgement = gate.judge_wave(verdicts, self.settings.max_inconclusive)
        for p in members:
            p.verdict = verdicts[p.member.proxy]
            p.state = {"pass": "passed", "fail": "failed", "inconclusive": "inconclusive"}[p.verdict.result]
        rollout.reason = f"wave {rollout.wave + 1}: {judgement.reason}"
        rollout.note(self.clock(), rollout.reason)
        if judgement.result == "fail":
            # nothing of a failed wave stays on the new configuration: the passed ones go back too
            for p in members:
                p.state = "failed"
            rollout.state = "halted"
            self._save(rollout)
            self._finish_halt(rollout)
        elif judgement.result == "pause":
            rollout.state = "paused"
            self._save(rollout)
        else:
            self._next_wave(rollout)

    def _next_wave(self, rollout: Rollout) -> None:
        if rollout.wave + 1 >= rollout.wave_count:
            rollout.state = "completed"
            rollout.note(self.clock(), "completed")
            self._save(rollout)
            self._put_fleet(running=rollout.target)
            return
        rollout.wave += 1
        rollout.wave_deployed_at = None
        self._save(rollout)

    def judge_at(self, deployed_at: float) -> float:
        """When a wave deployed at ``deployed_at`` is judged: after its bake, and never before its
        window after the deploy (which starts at the next whole minute: the stats API's time range
        has minute resolution) holds one whole minute. A bake shorter than that would otherwise
        query a window that has not begun, find no requests and pause every wave as inconclusive."""
        return max(deployed_at + self.settings.bake, after_window_start(deployed_at) + 60)

    def _judge(self, members: list[ProxyState], deployed_at: float) -> dict[str, gate.Verdict]:
        already = {p.member.proxy: p.verdict for p in members if p.verdict is not None}
        first = min((p.deployed_at or deployed_at) for p in members)
        window = self.settings.bake
        # whole minutes: the stats API's time range has minute resolution
        before = (int(first - max(window, 60)) // 60 * 60, int(first) // 60 * 60)
        after = (after_window_start(deployed_at), int(self.clock()) // 60 * 60)
        by_env: dict[str, list[str]] = {}
        for p in members:
            for env in p.member.environments:
                by_env.setdefault(env, []).append(p.member.proxy)
        totals: dict[str, list[gate.Window]] = {"before": [], "after": []}
        windows: dict[str, dict[str, gate.Window]] = {"before": {}, "after": {}}
        for env, proxies in sorted(by_env.items()):
            for name, (start, end) in (("before", before), ("after", after)):
                for chunk in range(0, len(proxies), 50):  # keep the filter's URL short
                    part = proxies[chunk : chunk + 50]
                    doc = self.stats.stats_grouped(
                        env,
                        dimensions=gate.STATS_DIMENSIONS,
                        select=gate.STATS_SELECT,
                        start=start,
                        end=max(start, end),
                        proxies=part,
                    )
                    found, _ = gate.windows_from_stats(doc, part)
                    for proxy, w in found.items():
                        windows[name][proxy] = _merge(windows[name].get(proxy), w)
        del totals
        verdicts: dict[str, gate.Verdict] = {}
        for p in members:
            name = p.member.proxy
            prior = already.get(name)
            if prior is not None and prior.reason.startswith("deploy failed"):
                verdicts[name] = prior
                continue
            verdicts[name] = gate.judge(
                windows["before"].get(name, gate.Window()),
                windows["after"].get(name, gate.Window()),
                self.settings.thresholds,
            )
        return verdicts

    def _finish_halt(self, rollout: Rollout) -> None:
        for p in rollout.in_wave(rollout.wave):
            if p.state == "failed":
                self.deployer.restore(p.member.proxy, p.previous, p.previous_labels)
                p.state = "restored"
                self._save(rollout)
        if rollout.ticket is None:
            rollout.ticket = self.tickets.open_once(
                f"gatehouse-rollout-{rollout.id}", self._ticket_title(rollout), self._ticket_body(rollout)
            )
            rollout.note(self.clock(), f"halted; ticket {rollout.ticket}")
            self._save(rollout)

    def _ticket_title(self, rollout: Rollout) -> str:
        return f"Rollout {rollout.target} halted: wave {rollout.wave + 1} failed its health gate"

    def _ticket_body(self, rollout: Rollout) -> str:
        lines = [
            f"Fleet change `{rollout.source}` -> `{rollout.target}` was halted by gatehouse.",
            "",
            f"Reason: {_inert(rollout.reason)}",
            "",
            "The wave's proxies are back on their previous revisions; the rest of the fleet was not",
            "touched. Resume (`gatehouse rollout resume`) or abort (`gatehouse rollout abort`).",
            "",
            "## Evidence",
            "",
        ]
        for p in rollout.in_wave(rollout.wave):
            v = p.verdict
            lines.append(f"- `{p.member.proxy}`: {v.result if v else '?'}: {_inert(v.reason) if v else ''}")
            if v is not None:
                lines.extend(
                    f"  - {gate.LABELS[c.measure]}: before {c.before} after {c.after} (limit {c.limit})"
                    f"{' FAILED' if c.failed else ''}"
                    for c in v.checks
                )
        try:
            diff = difference(self.config(rollout.source), self.config(rollout.target))
        except InputError:
            diff = "(a configuration is no longer stored)"
        lines += ["", "## Configuration difference", "", "```diff", diff.replace("```", "'''"), "```"]
        return "\n".join(lines)

    # -- a person's verbs -----------------------------------------------------------------------

    def resume(self) -> Rollout:
        """A halted rollout tries its failed wave again (a person judged the failure a false
        alarm); a paused one accepts its inconclusive proxies and goes on."""
        with self._lease():
            rollout = self._require_active()
            if rollout.state == "halted":
                self._finish_halt(rollout)
                for p in rollout.in_wave(rollout.wave):
                    p.state, p.verdict, p.revision = "pending", None, None
                rollout.wave_deployed_at = None
                rollout.state = "running"
                rollout.note(self.clock(), "resumed by a person")
                self._save(rollout)
            elif rollout.state == "paused":
                rollout.state = "running"
                rollout.note(self.clock(), f"wave {rollout.wave + 1} accepted by a person")
                self._next_wave(rollout)
        return rollout

    def abort(self) -> Rollout:
        """Every proxy the rollout reached goes back where it was; the configuration is rejected
        until it changes again."""
        with self._lease():
            rollout = self._require_active()
            for p in rollout.proxies.values():
                if p.state in ("deploying", "deployed", "passed", "inconclusive", "failed"):
                    self.deployer.restore(p.member.proxy, p.previous, p.previous_labels)
                    p.state = "restored"
                    self._save(rollout)
            rollout.state = "aborted"
            rollout.note(self.clock(), "aborted by a person")
            self._save(rollout)
            rejected = [*(self.fleet().get("rejected") or []), rollout.target][-20:]
            self._put_fleet(rejected=rejected)
        return rollout

    def _require_active(self) -> Rollout:
        rollout = self.current()
        if rollout is None or rollout.state not in ACTIVE:
            raise InputError("no rollout is running, paused or halted")
        return rollout

    # -- lease ----------------------------------------------------------------------------------

    def _lease(self) -> _Held:
        return _Held(self)


class _Held:
    def __init__(self, engine: RolloutEngine) -> None:
        self.engine = engine
        self.lease: Any = None

    def __enter__(self) -> None:
        self.lease = self.engine.coordinator.acquire(
            LEASE_KEY, self.engine.holder, self.engine.settings.lease_seconds
        )
        if self.lease is None:
            raise BusyError("another gatehouse process is advancing the rollout; try again shortly")

    def __exit__(self, *exc: object) -> None:
        self.engine.coordinator.release(self.lease)


def after_window_start(deployed_at: float) -> int:
    """The first whole minute after a deploy: the start of the window after it."""
    return math.ceil(deployed_at / 60) * 60


def _merge(a: gate.Window | None, b: gate.Window) -> gate.Window:
    if a is None:
        return b
    n = a.requests + b.requests

    def avg(x: float | None, y: float | None) -> float | None:
        if x is None or y is None:
            return x if y is None else y
        return (x * a.requests + y * b.requests) / n if n else None

    return gate.Window(
        n,
        a.auth_errors + b.auth_errors,
        a.client_errors + b.client_errors,
        a.server_errors + b.server_errors,
        a.target_errors + b.target_errors,
        avg(a.total_ms, b.total_ms),
        avg(a.target_ms, b.target_ms),
    )


def _inert(text: str) -> str:
    """Reasons carry proxy names and numbers only, but a ticket renders Markdown: defuse it."""
    return "".join(f"\\{c}" if c in "\\`*_[]<>#|@!" else c for c in text)[:500]


class Resolver:
    """Proxy name -> (profiles, owner id) to render with (``RolloutEngine.config_for``), for
    ``Registrar(config_for=...)``. The fleet record is read at most once per ``ttl`` (a sweep of
    1,000 services costs a few reads, not 2,000), configurations once each.

    Rendering writes nothing; :meth:`record_running` (``Registrar(before_apply=...)``) writes once,
    before the first Apigee write of a process, when the store names no running configuration yet:
    the configuration that deploy renders with becomes the one the fleet runs. Without it, the
    fleet's first tick would take its own configuration as the running one: a profiles file changed
    before any tick ran would never become a rollout, and the next sweep would redeploy the whole
    fleet with it at once."""

    def __init__(
        self,
        store: RolloutStore,
        present: FleetConfig,
        *,
        ttl: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        profiles: Any = None,
    ) -> None:
        """``profiles``: ``present``'s profiles as the caller already parsed them."""
        self.store, self.present, self.ttl, self.clock = store, present, ttl, clock
        self.cache: dict[str, Any] = {}
        self._present: tuple[Any, str] | None = (profiles, present.owner_id) if profiles is not None else None

    def _present_config(self) -> tuple[Any, str]:
        # parsed once: a sweep asks for every proxy, and parsing the profiles file costs ~18 ms
        if self._present is None:
            self._present = (self.present.profiles(), self.present.owner_id)
        return self._present

    def _fresh(self) -> None:
        if "at" not in self.cache or self.clock() - self.cache["at"] > self.ttl:
            fleet = self.store.get("fleet") or {}
            rid = fleet.get("rollout")
            doc = self.store.get(f"rollout/{rid}") if rid else None
            self.cache.update(at=self.clock(), fleet=fleet, rollout=Rollout.from_dict(doc) if doc else None)

    def __call__(self, proxy: str) -> tuple[Any, str]:
        self._fresh()
        running_id = self.cache["fleet"].get("running")
        present = self.present
        if not running_id:
            return self._present_config()
        chosen = str(running_id)
        rollout = self.cache["rollout"]
        if rollout is not None and rollout.state in ACTIVE and rollout.renders_target(proxy):
            chosen = rollout.target
        if chosen == present.id:
            return self._present_config()
        key = f"config/{chosen}"
        if key not in self.cache:
            stored = self.store.get(key)
            config = FleetConfig.from_dict(stored) if stored is not None else present
            self.cache[key] = (config.profiles(), config.owner_id)
        return self.cache[key]  # type: ignore[no-any-return]

    def record_running(self) -> None:
        """Before a deploy: make this process's configuration the running one when none is
        recorded (read again first: another process may have recorded one since)."""
        if self.cache.get("recorded") or (self.cache.get("fleet") or {}).get("running"):
            return
        fleet = self.store.get("fleet") or {}
        if not fleet.get("running"):
            self.store.put(f"config/{self.present.id}", self.present.to_dict())
            fleet = {**fleet, "running": self.present.id}
            self.store.put("fleet", fleet)
        self.cache.update(recorded=True, fleet=fleet, at=self.cache.get("at", self.clock()))


def resolver(
    store: RolloutStore,
    present: FleetConfig,
    *,
    ttl: float = 30.0,
    clock: Callable[[], float] = time.monotonic,
    profiles: Any = None,
) -> Resolver:
    """A :class:`Resolver` (kept as a function: callers build one per process)."""
    return Resolver(store, present, ttl=ttl, clock=clock, profiles=profiles)


def _duration(name: str, text: str) -> float:
    """``900``, ``900s``, ``15m`` or ``1h`` -> seconds."""
    value = text.strip().lower()
    scale = {"s": 1, "m": 60, "h": 3600}.get(value[-1:], 0)
    number = value[:-1] if scale else value
    try:
        seconds = float(number) * (scale or 1)
    except ValueError:
        raise InputError(f"{name}: {text[:20]!r} is not a duration (900, 900s, 15m, 1h)") from None
    if not 0 <= seconds <= 7 * 86400:
        raise InputError(f"{name}: {text[:20]!r} is outside 0..7 days")
    return seconds


def settings_from_env(environ: Mapping[str, str]) -> RolloutSettings:
    """``GATEHOUSE_ROLLOUT_*`` (README "Rollouts"); InputError for a bad value."""

    def get(key: str, default: str) -> str:
        return environ.get(f"GATEHOUSE_ROLLOUT_{key}", default)

    try:
        min_requests = int(get("MIN_REQUESTS", "50"))
    except ValueError:
        raise InputError("GATEHOUSE_ROLLOUT_MIN_REQUESTS must be a whole number") from None
    if min_requests < 1:
        raise InputError("GATEHOUSE_ROLLOUT_MIN_REQUESTS must be at least 1")
    allowed = get("MAX_INCONCLUSIVE", "25%")
    try:
        gate.allowed_inconclusive(allowed, 100)
    except ValueError:
        raise InputError("GATEHOUSE_ROLLOUT_MAX_INCONCLUSIVE must be a count or a percentage") from None
    try:
        max_deploys = int(get("MAX_DEPLOYS_PER_TICK", str(DEFAULT_MAX_DEPLOYS)))
    except ValueError:
        raise InputError("GATEHOUSE_ROLLOUT_MAX_DEPLOYS_PER_TICK must be a whole number") from None
    if max_deploys < 1:
        raise InputError("GATEHOUSE_ROLLOUT_MAX_DEPLOYS_PER_TICK must be at least 1")
    return RolloutSettings(
        waves=parse_waves(get("WAVES", "1,10%,50%,100%")),
        bake_seconds=_duration("GATEHOUSE_ROLLOUT_BAKE", get("BAKE", "15m")),
        analytics_delay_seconds=_duration("GATEHOUSE_ROLLOUT_ANALYTICS_DELAY", get("ANALYTICS_DELAY", "10m")),
        thresholds=gate.Thresholds(min_requests=min_requests),
        max_inconclusive=allowed,
        max_deploys_per_tick=max_deploys,
    )
