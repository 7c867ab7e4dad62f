"""The rollout record: one document that says where a fleet change stands.

States of a rollout: ``running`` (the scheduled tick moves it on), ``paused`` (a wave had more
inconclusive proxies than allowed: a person advances or aborts), ``halted`` (a wave failed its
gate and was restored: a person resumes or aborts), ``completed``, ``aborted``.

States of a proxy: ``pending`` (not reached) -> ``deploying`` (intent written, previous revisions
recorded, before any Apigee write) -> ``deployed`` (the new revision is READY) -> ``passed`` |
``inconclusive`` | ``failed`` -> (``restored``: back on its previous revisions). A crash between
two writes leaves a state from which the next tick finishes the step: ``deploying`` is redone
(registration finds the revision already there and deploys nothing twice), ``failed`` without
``restored`` is restored again.

Pure module.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gatehouse.rollouts.gate import Verdict
from gatehouse.rollouts.waves import Member

ACTIVE = ("running", "paused", "halted")  # a rollout in these states holds the fleet's configuration
FINISHED = ("completed", "aborted")
REACHED = ("deploying", "deployed", "passed", "inconclusive", "failed")  # render with the new config


@dataclass
class ProxyState:
    member: Member
    wave: int
    state: str = "pending"
    previous: dict[str, int] = field(default_factory=dict)  # environment -> revision before (0: none)
    previous_labels: dict[str, str] = field(default_factory=dict)
    revision: int | None = None
    deployed_at: float | None = None
    verdict: Verdict | None = None
    deploys: int = 0  # deploys of the new configuration this rollout made (tests: never two)

    def to_dict(self) -> dict[str, Any]:
        m = self.member
        return {
            "proxy": m.proxy,
            "service": m.service,
            "profile": m.profile,
            "environments": list(m.environments),
            "team": m.team,
            "traffic": m.traffic,
            "wave": self.wave,
            "state": self.state,
            "previous": dict(self.previous),
            "previous_labels": dict(self.previous_labels),
            "revision": self.revision,
            "deployed_at": self.deployed_at,
            "verdict": self.verdict.to_dict() if self.verdict else None,
            "deploys": self.deploys,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ProxyState:
        member = Member(
            str(d["proxy"]),
            str(d.get("service") or ""),
            str(d.get("profile") or ""),
            tuple(str(e) for e in d.get("environments") or ()),
            str(d.get("team") or ""),
            float(d.get("traffic") or 0.0),
        )
        verdict = d.get("verdict")
        return cls(
            member,
            int(d.get("wave") or 0),
            str(d.get("state") or "pending"),
            {str(k): int(v) for k, v in (d.get("previous") or {}).items()},
            {str(k): str(v) for k, v in (d.get("previous_labels") or {}).items()},
            d.get("revision"),
            d.get("deployed_at"),
            Verdict.from_dict(verdict) if isinstance(verdict, Mapping) else None,
            int(d.get("deploys") or 0),
        )


@dataclass
class Rollout:
    id: str
    source: str  # the configuration id the fleet ran before
    target: str  # the configuration id under test
    state: str = "running"
    wave: int = 0  # index of the current wave
    wave_deployed_at: float | None = None  # when the current wave's last deploy finished
    waves: list[str] = field(default_factory=list)  # the steps, for display ("1", "10%")
    proxies: dict[str, ProxyState] = field(default_factory=dict)
    reason: str = ""
    ticket: str | None = None
    created: float = 0.0
    updated: float = 0.0
    history: list[str] = field(default_factory=list)

    @property
    def wave_count(self) -> int:
        return 1 + max((p.wave for p in self.proxies.values()), default=-1)

    def in_wave(self, index: int) -> list[ProxyState]:
        return sorted((p for p in self.proxies.values() if p.wave == index), key=lambda p: p.member.proxy)

    def note(self, at: float, text: str) -> None:
        self.history.append(f"{at:.0f} {text}")
        del self.history[:-50]  # the last 50 events are plenty for a person; the log has the rest

    def renders_target(self, proxy: str) -> bool:
        """Whether ``proxy`` is to run the configuration under test now."""
        p = self.proxies.get(proxy)
        if p is None or self.state not in ACTIVE:
            return False
        return p.state in ("deploying", "deployed", "passed", "inconclusive")

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "source": self.source,
            "target": self.target,
            "state": self.state,
            "wave": self.wave,
            "wave_deployed_at": self.wave_deployed_at,
            "waves": list(self.waves),
            "proxies": {name: p.to_dict() for name, p in self.proxies.items()},
            "reason": self.reason,
            "ticket": self.ticket,
            "created": self.created,
            "updated": self.updated,
            "history": list(self.history),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Rollout:
        return cls(
            str(d["id"]),
            str(d.get("source") or ""),
            str(d.get("target") or ""),
            str(d.get("state") or "running"),
            int(d.get("wave") or 0),
            d.get("wave_deployed_at"),
            [str(w) for w in d.get("waves") or []],
            {str(k): ProxyState.from_dict(v) for k, v in (d.get("proxies") or {}).items()},
            str(d.get("reason") or ""),
            d.get("ticket"),
            float(d.get("created") or 0.0),
            float(d.get("updated") or 0.0),
            [str(h) for h in d.get("history") or []],
        )


@dataclass
class Freeze:
    until: float
    reason: str
    by: str = ""
    paused_jobs: list[str] = field(default_factory=list)

    def active(self, now: float) -> bool:
        return now < self.until

    def to_dict(self) -> dict[str, Any]:
        return {"until": self.until, "reason": self.reason, "by": self.by, "paused_jobs": self.paused_jobs}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Freeze:
        return cls(
            float(d.get("until") or 0.0),
            str(d.get("reason") or ""),
            str(d.get("by") or ""),
            [str(j) for j in d.get("paused_jobs") or []],
        )
