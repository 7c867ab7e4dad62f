"""The rollout engine over registration's in-memory fakes: a failing change is stopped after one
proxy and restored, a healthy one goes through every wave, a crash after any write is finished by
the next tick without a second deploy, and an abort restores everything the rollout reached."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from registration_fakes import FakeApigee, FakeCloudRun, FakeCoordinator, v2_service
from tickets_fakes import Crash, FakeTracker

from gatehouse.config import Settings
from gatehouse.errors import TransientError
from gatehouse.registration.plan import ServiceRef
from gatehouse.registration.service import Registrar
from gatehouse.rollouts import gate
from gatehouse.rollouts.deployer import RegistrarDeployer, TrackerTickets, changed_members
from gatehouse.rollouts.engine import RolloutEngine, RolloutSettings
from gatehouse.rollouts.fleet import FleetConfig, bundle_settings
from gatehouse.rollouts.waves import parse_waves

SA = "apigee-runtime@p.iam.gserviceaccount.com"
BASE = (
    __import__("importlib.resources")
    .resources.files("gatehouse")
    .joinpath("profiles.yaml")
    .read_text("utf-8")
)
RENAMED = BASE.replace("header: x-api-key", "header: x-caller-key", 1)
N = 12


class Store:
    def __init__(self) -> None:
        self.docs: dict[str, dict[str, Any]] = {}
        self.writes = 0
        self.crash_at: int | None = None

    def get(self, key: str) -> dict[str, Any] | None:
        doc = self.docs.get(key)
        return copy.deepcopy(doc) if doc is not None else None

    def put(self, key: str, doc: Mapping[str, Any]) -> None:
        self.docs[key] = copy.deepcopy(dict(doc))
        self.writes += 1
        if self.crash_at is not None and self.writes == self.crash_at:
            raise Crash  # the write took effect; the process dies before it learns so


class Stats:
    """Stats per (proxy, window): the after-window of proxies in ``bad`` shows 401s."""

    def __init__(self, clock: list[float]) -> None:
        self.bad: set[str] = set()
        self.clock = clock
        self.calls = 0

    def stats_grouped(
        self,
        environment: str,
        *,
        dimensions: Sequence[str],
        select: Sequence[str],
        start: int,
        end: int,
        proxies: Sequence[str],
    ) -> Mapping[str, Any]:
        assert tuple(dimensions) == gate.STATS_DIMENSIONS
        self.calls += 1
        after = start >= 10_000  # the deploys happen at t=10,000 and later
        dims = []
        for proxy in proxies:
            code, n = ("401", 200) if after and proxy in self.bad else ("200", 200)
            dims.append(
                {
                    "name": f"{proxy},{code}",
                    "individualNames": [proxy, code],
                    "metrics": [
                        {"name": "sum(message_count)", "values": [str(n)]},
                        {"name": "avg(total_response_time)", "values": ["100.0"]},
                        {"name": "avg(target_response_time)", "values": ["70.0"]},
                    ],
                }
            )
        return {"environments": [{"name": environment, "dimensions": dims}]}


class World:
    def __init__(self) -> None:
        self.apigee = FakeApigee()
        self.services = {
            ServiceRef("proj-one", "europe-west1", f"svc{i:02d}"): v2_service(
                "proj-one", "europe-west1", f"svc{i:02d}"
            )
            for i in range(N)
        }
        self.cloudrun = FakeCloudRun({r.key: d for r, d in self.services.items()})
        self.coordinator = FakeCoordinator()
        # every field the fleet's bundles depend on is set here: a stack test earlier in the session
        # leaves the local stack's GATEHOUSE_* settings (another owner id) in the environment
        self.settings = Settings(
            proxy_service_account=SA,
            projects=["proj-one"],
            regions=["europe-west1"],
            apigee_environments=["prod"],
            owner_id="gatehouse",
        )
        self.store = Store()
        self.clock = [10_000.0]
        self.stats = Stats(self.clock)
        self.tracker = FakeTracker()
        self.running = FleetConfig(BASE, settings=bundle_settings("gatehouse"))
        self.registrar(self.running).sweep(apply=True)

    def registrar(self, config: FleetConfig) -> Registrar:
        return Registrar(
            self.settings,
            self.apigee,
            self.cloudrun,
            self.coordinator,
            config.profiles(),
            sleep=lambda s: None,
        )

    def engine(self, holder: str = "t") -> RolloutEngine:
        return RolloutEngine(
            self.store,
            self.coordinator,
            RegistrarDeployer(self.apigee, self.registrar, SA),
            self.stats,
            TrackerTickets(self.tracker),
            settings=RolloutSettings(
                waves=parse_waves("1,10%,50%,100%"), bake_seconds=600, analytics_delay_seconds=600
            ),
            clock=lambda: self.clock[0],
            holder=holder,
        )

    def deployed(self) -> dict[str, int]:
        return {proxy: rev for (env, proxy), rev in self.apigee.deployed.items()}

    def start(self, target: FleetConfig) -> Any:
        engine = self.engine()
        engine.running(self.running)
        members = changed_members(self.services, self.registrar(self.running), self.registrar(target))
        return engine.start(target, members)

    def run(self, engine: RolloutEngine, ticks: int = 20) -> Any:
        rollout = None
        for _ in range(ticks):
            rollout = engine.tick()
            self.clock[0] += 301
            if rollout is None or rollout.state != "running":
                break
        return rollout


def test_a_renamed_key_header_is_stopped_after_one_proxy_and_restored() -> None:
    world = World()
    before = world.deployed()
    target = FleetConfig(RENAMED, settings=bundle_settings("gatehouse"))
    rollout = world.start(target)
    assert rollout is not None and [len(rollout.in_wave(i)) for i in range(4)] == [1, 1, 4, 6]
    first = rollout.in_wave(0)[0].member.proxy
    world.stats.bad = {first}
    deploys = world.apigee.calls["deploy"]
    rollout = world.run(world.engine())
    assert rollout.state == "halted"
    assert world.deployed() == before  # the one changed proxy is back; eleven never touched
    assert world.apigee.calls["deploy"] == deploys + 2  # its deploy, then its restore
    assert [p.member.proxy for p in rollout.proxies.values() if p.state == "restored"] == [first]
    assert all(p.state == "pending" for p in rollout.proxies.values() if p.member.proxy != first)
    verdict = rollout.proxies[first].verdict
    assert verdict.result == "fail" and "401/403 rate" in verdict.reason
    assert len(world.tracker.issues) == 1
    body = next(iter(world.tracker.issues.values())).body
    assert "x-caller-key" in body and "401/403 rate" in body
    # nothing else is redeployed while halted, and the ticket is not opened twice
    assert world.run(world.engine()).state == "halted"
    assert world.deployed() == before and len(world.tracker.issues) == 1
    # a deploy of a proxy the rollout has not reached renders with the running configuration
    engine = world.engine()
    other = rollout.in_wave(3)[0].member.proxy
    assert engine.config_for(other, target).id == world.running.id
    # ... and the restored one too
    assert engine.config_for(first, target).id == world.running.id


def test_a_healthy_change_goes_through_every_wave() -> None:
    world = World()
    target = FleetConfig(RENAMED, settings=bundle_settings("gatehouse"))
    world.start(target)
    rollout = world.run(world.engine(), ticks=40)
    assert rollout.state == "completed"
    assert all(p.state == "passed" for p in rollout.proxies.values())
    assert world.engine().fleet()["running"] == target.id
    assert world.tracker.issues == {}
    # every proxy now holds a bundle with the new header
    assert all(p.deploys == 1 for p in rollout.proxies.values())


def test_no_rollout_for_an_unchanged_configuration_and_none_for_an_aborted_one() -> None:
    world = World()
    assert world.start(world.running) is None
    target = FleetConfig(RENAMED, settings=bundle_settings("gatehouse"))
    world.start(target)
    before = world.deployed()
    engine = world.engine()
    engine.tick()  # wave 1 deployed
    world.clock[0] += 700
    engine.tick()  # judged, passes: wave 2 next
    engine.tick()  # wave 2 deployed
    assert world.deployed() != before
    rollout = engine.abort()
    assert rollout.state == "aborted" and world.deployed() == before
    assert world.start(target) is None  # rejected until the configuration changes again


def _clean_run() -> int:
    world = World()
    target = FleetConfig(RENAMED, settings=bundle_settings("gatehouse"))
    world.stats.bad = set()
    start = world.store.writes
    world.start(target)
    world.run(world.engine(), ticks=40)
    return world.store.writes - start


WRITES = _clean_run()


@pytest.mark.parametrize("k", range(1, WRITES + 1))
def test_a_crash_after_any_write_is_finished_by_the_next_tick(k: int) -> None:
    world = World()
    target = FleetConfig(RENAMED, settings=bundle_settings("gatehouse"))
    world.store.crash_at = world.store.writes + k
    deploys_before = world.apigee.calls["deploy"]
    try:
        world.start(target)
        world.run(world.engine("first"), ticks=40)
    except Crash:
        pass
    world.store.crash_at = None
    world.coordinator.held.clear()  # the dead process's lease expired
    if world.engine().current() is None:
        world.start(target)
    rollout = world.run(world.engine("second"), ticks=40)
    assert rollout.state == "completed"
    # every proxy deployed exactly once, none left behind
    assert world.apigee.calls["deploy"] - deploys_before == N
    names = {p.member.proxy for p in rollout.proxies.values()}
    assert len(names) == N and all(p.state == "passed" for p in rollout.proxies.values())


def test_registration_keeps_unreached_proxies_on_the_running_configuration() -> None:
    """The profiles file changed (this process renders with it), a rollout halted after wave 1:
    a full sweep with the new file deploys nothing, and a service's own change deploys at once,
    rendered with the running configuration."""
    from gatehouse.rollouts.engine import resolver

    world = World()
    target = FleetConfig(RENAMED, settings=bundle_settings("gatehouse"))
    rollout = world.start(target)
    first = rollout.in_wave(0)[0].member.proxy
    world.stats.bad = {first}
    assert world.run(world.engine()).state == "halted"
    before = world.deployed()
    deploys = world.apigee.calls["deploy"]
    registrar = Registrar(
        world.settings,
        world.apigee,
        world.cloudrun,
        world.coordinator,
        target.profiles(),
        sleep=lambda s: None,
        config_for=resolver(world.store, target),
    )
    registrar.sweep(apply=True)
    assert world.apigee.calls["deploy"] == deploys and world.deployed() == before
    # an owner's own change (a new base path) registers at once, with the running header
    ref = next(r for r, d in world.services.items() if r.key != rollout.proxies[first].member.service)
    world.cloudrun.services[ref.key]["annotations"] = {"gatehouse.dev/base-path": "/moved"}
    report = registrar.reconcile_service(ref)
    assert report.outcome.result == "registered", report.outcome.reason
    assert registrar.desired(ref, world.cloudrun.services[ref.key]).proxy.content_hash == (
        world.registrar(world.running).desired(ref, world.cloudrun.services[ref.key]).proxy.content_hash
    )


def _failing_run_writes() -> int:
    world = World()
    target = FleetConfig(RENAMED, settings=bundle_settings("gatehouse"))
    start = world.store.writes
    rollout = world.start(target)
    world.stats.bad = {rollout.in_wave(0)[0].member.proxy}
    world.run(world.engine())
    return world.store.writes - start


@pytest.mark.parametrize("k", range(1, _failing_run_writes() + 1))
def test_a_crash_in_a_failing_rollout_still_ends_restored_and_halted_with_one_ticket(k: int) -> None:
    world = World()
    before = world.deployed()
    target = FleetConfig(RENAMED, settings=bundle_settings("gatehouse"))
    world.store.crash_at = world.store.writes + k
    try:
        rollout = world.start(target)
        world.stats.bad = {rollout.in_wave(0)[0].member.proxy}
        world.run(world.engine("first"))
    except Crash:
        pass
    world.store.crash_at = None
    world.coordinator.held.clear()
    rollout = world.engine().current() or world.start(target)
    world.stats.bad = {rollout.in_wave(0)[0].member.proxy}
    rollout = world.run(world.engine("second"))
    assert rollout.state == "halted"
    assert world.deployed() == before
    assert len(world.tracker.issues) == 1
    assert sum(p.state == "pending" for p in rollout.proxies.values()) == N - 1


def test_a_transient_deploy_failure_leaves_the_proxy_deploying_for_the_next_tick() -> None:
    world = World()
    target = FleetConfig(RENAMED, settings=bundle_settings("gatehouse"))
    rollout = world.start(target)
    first = rollout.in_wave(0)[0].member.proxy
    world.apigee.transient_once.add("deploy")
    engine = world.engine()
    with pytest.raises(TransientError):
        engine.tick()
    assert engine.current().proxies[first].state == "deploying"
    rollout = world.run(engine, ticks=40)
    assert rollout.state == "completed"
    assert all(p.verdict is not None and p.verdict.result == "pass" for p in rollout.proxies.values())


def test_the_first_deploy_records_the_running_configuration_so_a_later_file_change_is_a_rollout() -> None:
    """Services registered (by the functions) before any tick ran, then the profiles file changed:
    the first tick must see a change to roll out, not take the new file as what the fleet runs
    (found on the local stack: the tick bootstrapped the running configuration from its own file,
    started no rollout, and every later sweep would have redeployed the fleet at once)."""
    from gatehouse.rollouts.engine import resolver

    world = World()
    world.apigee = FakeApigee()  # a fleet registered through the resolver, as runtime wires it
    pick = resolver(world.store, world.running)
    Registrar(
        world.settings,
        world.apigee,
        world.cloudrun,
        world.coordinator,
        world.running.profiles(),
        sleep=lambda s: None,
        config_for=pick,
        before_apply=pick.record_running,
    ).sweep(apply=True)
    assert world.store.get("fleet") == {"running": world.running.id}
    assert world.store.get(f"config/{world.running.id}") == world.running.to_dict()
    writes = world.store.writes
    pick.record_running()  # once per process: later deploys write nothing
    assert world.store.writes == writes

    target = FleetConfig(RENAMED, settings=bundle_settings("gatehouse"))
    engine = world.engine()
    assert engine.running(target).id == world.running.id  # the tick's own file is not "running"
    members = changed_members(world.services, world.registrar(world.running), world.registrar(target))
    rollout = engine.start(target, members)
    assert rollout is not None and len(rollout.proxies) == N and rollout.source == world.running.id


def test_rendering_alone_records_nothing() -> None:
    from gatehouse.rollouts.engine import resolver

    world = World()
    writes = world.store.writes
    pick = resolver(world.store, world.running)
    Registrar(
        world.settings,
        world.apigee,
        world.cloudrun,
        world.coordinator,
        world.running.profiles(),
        sleep=lambda s: None,
        config_for=pick,
        before_apply=pick.record_running,
    ).sweep(apply=False)  # a plan (maybe with a person's edited file) must not name the running one
    assert world.store.writes == writes and world.store.get("fleet") is None


def test_the_resolver_parses_the_profiles_file_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """A sweep asks the resolver for every proxy: parsing the profiles each time made the no-op
    sweep of 1,000 services 18 s slower (found by profiling bench.noop_sweep)."""
    from gatehouse.rollouts import fleet
    from gatehouse.rollouts.engine import resolver

    world = World()
    parsed: list[str] = []
    real = fleet.parse_profiles
    monkeypatch.setattr(fleet, "parse_profiles", lambda *a, **k: parsed.append("x") or real(*a, **k))
    pick = resolver(world.store, world.running)
    first = pick("svc00-proxy")
    assert all(pick(f"svc{i:02d}-proxy") == first for i in range(N))
    assert len(parsed) == 1
    # given the caller's own parse of the same file (runtime.registrar), it parses nothing
    already = world.running.profiles()
    parsed.clear()
    assert resolver(world.store, world.running, profiles=already)("svc00-proxy") == (already, "gatehouse")
    assert parsed == []


class WindowStats(Stats):
    def __init__(self, clock: list[float]) -> None:
        super().__init__(clock)
        self.windows: list[tuple[int, int, float]] = []

    def stats_grouped(self, environment: str, **kw: Any) -> Mapping[str, Any]:
        self.windows.append((kw["start"], kw["end"], self.clock[0]))
        return super().stats_grouped(environment, **kw)


def test_a_short_bake_waits_until_the_window_after_the_deploy_holds_a_whole_minute() -> None:
    """GATEHOUSE_ROLLOUT_BAKE=0: judging at once would query a window (from the next whole minute)
    that has not begun, see no requests and call every proxy inconclusive."""
    world = World()
    world.stats = WindowStats(world.clock)
    world.clock[0] = 10_005.0  # deploys land 5 s into a minute (10,020 is the next whole one)
    target = FleetConfig(RENAMED, settings=bundle_settings("gatehouse"))
    world.start(target)
    engine = RolloutEngine(
        world.store,
        world.coordinator,
        RegistrarDeployer(world.apigee, world.registrar, SA),
        world.stats,
        TrackerTickets(world.tracker),
        settings=RolloutSettings(waves=parse_waves("1,100%"), bake_seconds=0, analytics_delay_seconds=0),
        clock=lambda: world.clock[0],
    )
    engine.tick()  # wave 1 deployed at 10,005
    for now in (10_006.0, 10_020.0, 10_079.0):
        world.clock[0] = now
        assert engine.tick().wave == 0 and world.stats.windows == []  # still baking
    world.clock[0] = 10_080.0
    rollout = engine.tick()
    assert rollout.wave == 1 and rollout.in_wave(0)[0].state == "passed"
    after = [w for w in world.stats.windows if w[0] >= 10_000]
    assert after == [(10_020, 10_080, 10_080.0)]


def test_a_wave_bigger_than_the_deploy_bound_goes_out_over_several_ticks_and_is_judged_once() -> None:
    world = World()
    target = FleetConfig(RENAMED, settings=bundle_settings("gatehouse"))
    world.start(target)  # waves of 1, 1, 4 and 6 proxies, all in "prod"
    engine = RolloutEngine(
        world.store,
        world.coordinator,
        RegistrarDeployer(world.apigee, world.registrar, SA),
        world.stats,
        TrackerTickets(world.tracker),
        settings=RolloutSettings(
            waves=parse_waves("1,10%,50%,100%"),
            bake_seconds=600,
            analytics_delay_seconds=600,
            max_deploys_per_tick=4,
        ),
        clock=lambda: world.clock[0],
    )
    per_tick: list[int] = []
    rollout = None
    for _ in range(40):
        before = world.apigee.calls["deploy"]
        rollout = engine.tick()
        per_tick.append(world.apigee.calls["deploy"] - before)
        world.clock[0] += 301
        if rollout is None or rollout.state != "running":
            break
    assert rollout is not None and rollout.state == "completed"
    assert max(per_tick) == 4 and sum(per_tick) == N
    assert [n for n in per_tick if n] == [1, 1, 4, 4, 2]  # the last wave of six over two ticks
    assert all(p.deploys == 1 and p.state == "passed" for p in rollout.proxies.values())


def test_the_window_after_a_deploy_starts_at_the_next_whole_minute() -> None:
    """A deploy in a minute's first second counts from the next minute (int(t + 59) // 60 * 60,
    which the e2e test used to seed its 401s, put them in the deploy's own minute)."""
    from gatehouse.rollouts.engine import after_window_start

    assert after_window_start(1796595060.47) == 1796595120
    assert after_window_start(1796595119.99) == 1796595120
    assert after_window_start(1796595120.0) == 1796595120
