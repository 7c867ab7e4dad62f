"""Pure rollout core: fleet configuration ids, wave planning, and the health gate's tables."""

from __future__ import annotations

import pytest

from gatehouse.errors import InputError
from gatehouse.rollouts.fleet import FleetConfig, difference
from gatehouse.rollouts.gate import (
    Thresholds,
    Verdict,
    Window,
    judge,
    judge_wave,
    windows_from_stats,
)
from gatehouse.rollouts.waves import Member, order, parse_waves, plan_waves

PROFILES = "default: open\nprofiles:\n  open:\n    auth: {type: none, acknowledge_public: true}\n"


# -- fleet configuration --------------------------------------------------------------------------


def test_the_configuration_id_follows_every_input_that_reaches_bundles() -> None:
    base = FleetConfig(PROFILES, "1", {"owner_id": "gatehouse"})
    assert base.id == FleetConfig(PROFILES, "1", {"owner_id": "gatehouse"}).id
    others = {
        FleetConfig(PROFILES + "# note\n", "1", {"owner_id": "gatehouse"}).id,
        FleetConfig(PROFILES, "2", {"owner_id": "gatehouse"}).id,
        FleetConfig(PROFILES, "1", {"owner_id": "team-b"}).id,
    }
    assert base.id not in others and len(others) == 3


def test_a_configuration_survives_its_stored_form_and_shows_its_difference() -> None:
    old = FleetConfig(PROFILES, "1", {"owner_id": "gatehouse"})
    new = FleetConfig(PROFILES.replace("open:", "public:").replace("default: open", "default: public"), "2")
    assert FleetConfig.from_dict(old.to_dict()) == old
    diff = difference(old, new)
    assert "render version: 1 -> 2" in diff and "-  open:" in diff and "+  public:" in diff
    with pytest.raises(InputError):
        FleetConfig.from_dict({"profiles_text": 3})


# -- waves ------------------------------------------------------------------------------------------


def test_wave_steps_parse_and_end_at_the_whole_fleet() -> None:
    assert [str(s) for s in parse_waves("1,10%,50%,100%")] == ["1", "10%", "50%", "100%"]
    assert [str(s) for s in parse_waves("2, 25%")] == ["2", "25%", "100%"]
    for bad in ("", "0", "150%", "10%,5%", "a", "1,,2", "-1"):
        with pytest.raises(InputError):
            parse_waves(bad)


def _member(
    i: int, *, profile: str = "apikey", env: str = "prod", team: str = "a", traffic: float = 0
) -> Member:
    return Member(f"p{i:02d}", f"projects/x/locations/r/services/s{i}", profile, (env,), team, traffic)


def test_twelve_proxies_go_out_as_one_then_the_rest_in_growing_waves() -> None:
    members = [_member(i, traffic=i) for i in range(12)]
    waves = plan_waves(members, parse_waves("1,10%,50%,100%"))
    assert [len(w) for w in waves] == [1, 1, 4, 6]
    assert waves[0][0].proxy == "p11"  # the busiest judges fastest
    assert sorted(m.proxy for w in waves for m in w) == sorted(m.proxy for m in members)


def test_the_first_waves_cover_profiles_environments_teams_and_quiet_proxies() -> None:
    members = [_member(i, traffic=1000 + i) for i in range(20)]  # busy apikey/prod/team a
    members += [
        _member(30, profile="jwt", traffic=900),
        _member(31, env="test", traffic=800),
        _member(32, team="b", traffic=700),
        _member(33, traffic=5),  # quiet: under a tenth of the median
    ]
    ordered = order(members)
    # the busiest first, then one of each profile, environment, team and traffic band not yet
    # covered, busier first; then the rest by traffic
    assert [m.proxy for m in ordered[:6]] == ["p19", "p30", "p31", "p32", "p33", "p18"]
    assert [len(w) for w in plan_waves(members, parse_waves("1,25%,100%"))] == [1, 5, 18]


def test_waves_never_come_out_empty() -> None:
    assert [len(w) for w in plan_waves([_member(i) for i in range(3)], parse_waves("1,10%,50%,100%"))] == [
        1,
        1,
        1,
    ]
    assert plan_waves([], parse_waves("1,100%")) == []


# -- the gate ---------------------------------------------------------------------------------------

T = Thresholds(min_requests=50)
CLEAN = Window(requests=1000, total_ms=120.0, target_ms=80.0)


@pytest.mark.parametrize(
    ("before", "after", "result", "why"),
    [
        # no traffic after the deploy: inconclusive, never a pass
        (CLEAN, Window(), "inconclusive", "0 request(s) after the deploy"),
        (CLEAN, Window(requests=49, total_ms=120.0), "inconclusive", "fewer than the 50"),
        # no baseline, and nothing that would fail even against a clean one: inconclusive
        (Window(requests=3), Window(requests=500, total_ms=100.0), "inconclusive", "needed for a baseline"),
        # no baseline, but a 401 burst fails against a clean one
        (Window(), Window(requests=500, auth_errors=500), "fail", "no baseline traffic"),
        # zero-error baseline against a burst of 401s: a failure, not a division by zero
        (
            CLEAN,
            Window(requests=1000, auth_errors=40, total_ms=120.0, target_ms=80.0),
            "fail",
            "401/403 rate",
        ),
        # ... while a handful of 404s stays under the other-4xx limit
        (CLEAN, Window(requests=1000, client_errors=5, total_ms=120.0, target_ms=80.0), "pass", "within"),
        # latency-only regressions
        (CLEAN, Window(requests=1000, total_ms=400.0, target_ms=80.0), "fail", "avg total latency"),
        (CLEAN, Window(requests=1000, total_ms=300.0, target_ms=260.0), "fail", "avg target latency"),
        # +90 ms is under the absolute limit; x1.3 of a slow baseline is under the ratio
        (CLEAN, Window(requests=1000, total_ms=210.0, target_ms=80.0), "pass", "within"),
        (
            Window(requests=1000, total_ms=1000.0),
            Window(requests=1000, total_ms=1200.0),
            "pass",
            "within",
        ),
        # mixed error classes: a baseline with 401s and 5xx; only the 5xx class got worse
        (
            Window(requests=1000, auth_errors=50, server_errors=10, total_ms=100.0),
            Window(requests=1000, auth_errors=52, server_errors=60, total_ms=100.0),
            "fail",
            "5xx rate",
        ),
        # ... the same 401 rate as before is no regression
        (
            Window(requests=1000, auth_errors=50, server_errors=10, total_ms=100.0),
            Window(requests=1000, auth_errors=55, server_errors=10, total_ms=100.0),
            "pass",
            "within",
        ),
        # target errors alone
        (CLEAN, Window(requests=1000, target_errors=30, total_ms=120.0), "fail", "target error rate"),
    ],
)
def test_gate_table(before: Window, after: Window, result: str, why: str) -> None:
    verdict = judge(before, after, T)
    assert verdict.result == result, verdict.reason
    assert why in verdict.reason
    assert verdict.before == before and verdict.after == after
    if result == "fail":
        assert any(c.failed for c in verdict.checks)
    assert Verdict.from_dict(verdict.to_dict()) == verdict


def test_a_verdict_keeps_the_numbers_of_every_measure() -> None:
    verdict = judge(CLEAN, Window(requests=1000, auth_errors=40, total_ms=120.0, target_ms=80.0), T)
    numbers = {c.measure: (c.before, c.after, c.failed) for c in verdict.checks}
    assert numbers["auth_errors"] == (0.0, 0.04, True)
    assert numbers["total_ms"] == (120.0, 120.0, False)
    assert set(numbers) == {
        "auth_errors",
        "client_errors",
        "server_errors",
        "target_errors",
        "total_ms",
        "target_ms",
    }


def test_a_wave_fails_on_any_failure_and_pauses_on_too_many_inconclusive() -> None:
    ok = judge(CLEAN, CLEAN, T)
    bad = judge(CLEAN, Window(requests=1000, auth_errors=500), T)
    quiet = judge(CLEAN, Window(), T)
    assert judge_wave({"a": ok, "b": bad, "c": quiet}).result == "fail"
    assert judge_wave({"a": ok, "b": ok, "c": ok, "d": quiet}, "25%").result == "pass"
    paused = judge_wave({"a": ok, "b": quiet, "c": quiet, "d": ok}, "25%")
    assert paused.result == "pause" and paused.inconclusive == ("b", "c")
    assert judge_wave({"a": quiet}, "0").result == "pause"
    assert judge_wave({"a": quiet}, "1").result == "pass"


def test_stats_grouped_by_status_code_become_windows() -> None:
    doc = {
        "environments": [
            {
                "name": "prod",
                "dimensions": [
                    {
                        "name": "orders,200",
                        "individualNames": ["orders", "200"],
                        "metrics": [
                            {"name": "sum(message_count)", "values": ["90"]},
                            {"name": "avg(total_response_time)", "values": ["100.0"]},
                            {"name": "avg(target_response_time)", "values": ["60.0"]},
                            {"name": "sum(target_error)", "values": ["0"]},
                        ],
                    },
                    {
                        "name": "orders,401",
                        "individualNames": ["orders", "401"],
                        "metrics": [
                            {"name": "sum(message_count)", "values": ["10"]},
                            {"name": "avg(total_response_time)", "values": ["10.0"]},
                        ],
                    },
                    {
                        "name": "orders,503",
                        "individualNames": ["orders", "503"],
                        "metrics": [
                            {"name": "sum(message_count)", "values": ["5"]},
                            {"name": "sum(target_error)", "values": ["5"]},
                        ],
                    },
                    {"name": "other,200", "individualNames": ["other", "200"], "metrics": []},
                ],
            }
        ]
    }
    windows, problems = windows_from_stats(doc, ["orders", "quiet"])
    assert problems == []
    w = windows["orders"]
    assert (w.requests, w.auth_errors, w.server_errors, w.target_errors) == (105, 10, 5, 5)
    assert w.total_ms == pytest.approx((90 * 100 + 10 * 10) / 100)
    assert windows["quiet"] == Window()
    assert windows_from_stats("nonsense", ["a"])[1]


def test_rollout_settings_from_the_environment() -> None:
    from gatehouse.rollouts.engine import settings_from_env

    default = settings_from_env({})
    assert (default.bake_seconds, default.analytics_delay_seconds, default.bake) == (900, 600, 900)
    assert [str(s) for s in default.waves] == ["1", "10%", "50%", "100%"]
    # the bake is never shorter than the analytics delay
    short = settings_from_env({"GATEHOUSE_ROLLOUT_BAKE": "1m", "GATEHOUSE_ROLLOUT_ANALYTICS_DELAY": "10m"})
    assert short.bake == 600
    zero = settings_from_env({"GATEHOUSE_ROLLOUT_BAKE": "0", "GATEHOUSE_ROLLOUT_ANALYTICS_DELAY": "0s"})
    assert zero.bake == 0
    for key, bad in (
        ("BAKE", "soon"),
        ("BAKE", "-5"),
        ("ANALYTICS_DELAY", "200h"),
        ("MIN_REQUESTS", "0"),
        ("MIN_REQUESTS", "many"),
        ("MAX_INCONCLUSIVE", "some"),
        ("WAVES", "10%,5%"),
    ):
        with pytest.raises(InputError):
            settings_from_env({f"GATEHOUSE_ROLLOUT_{key}": bad})


def test_the_rollout_view_prints_reasons_without_control_characters(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from gatehouse.cli_views import print_rollout
    from gatehouse.rollouts.model import Freeze, ProxyState, Rollout

    rollout = Rollout("r1", "aaa", "bbb", state="halted", reason="wave 1: \x1b[2Jbad\rthing")
    member = _member(1)
    rollout.proxies[member.proxy] = ProxyState(
        member, 0, "restored", verdict=judge(CLEAN, Window(requests=1000, auth_errors=500), T)
    )
    print_rollout(rollout, Freeze(4_102_444_800, "release \x07week", "ops"), as_json=False)
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\r" not in out and "\x07" not in out
    assert "FROZEN until 2100-01-01" in out and "halted" in out and "401/403 rate" in out
    print_rollout(rollout, None, as_json=True)
    assert '"state": "halted"' in capsys.readouterr().out


def test_a_tick_deploys_at_most_the_per_environment_bound() -> None:
    from gatehouse.rollouts.waves import take_deploys

    def m(name: str, *envs: str) -> Member:
        return Member(name, f"projects/p/locations/r/services/{name}", "apikey", envs, "t")

    members = [m("a", "prod"), m("b", "prod", "test"), m("c", "test"), m("d", "prod"), m("e", "test")]
    assert [x.proxy for x in take_deploys(members, 1)] == ["a", "c"]  # b needs room in both
    assert [x.proxy for x in take_deploys(members, 2)] == ["a", "b", "c"]
    assert [x.proxy for x in take_deploys(members, 3)] == ["a", "b", "c", "d", "e"]
    with pytest.raises(InputError):
        take_deploys(members, 0)


def test_rollout_deploy_bound_from_the_environment() -> None:
    from gatehouse.rollouts.engine import settings_from_env

    assert settings_from_env({}).max_deploys_per_tick == 100
    assert settings_from_env({"GATEHOUSE_ROLLOUT_MAX_DEPLOYS_PER_TICK": "5"}).max_deploys_per_tick == 5
    for bad in ("0", "lots"):
        with pytest.raises(InputError):
            settings_from_env({"GATEHOUSE_ROLLOUT_MAX_DEPLOYS_PER_TICK": bad})
