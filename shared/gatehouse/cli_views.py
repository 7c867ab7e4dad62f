"""Terminal output of the CLI: tables, plans and progress bars (rich), or JSON lines for scripts."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from gatehouse.ports import Outcome

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

    from gatehouse.registration.service import Report

_STYLE = {
    "registered": "green",
    "unregistered": "yellow",
    "unchanged": "dim",
    "create": "green",
    "update": "cyan",
    "redeploy": "cyan",
    "unregister": "yellow",
    "skip": "dim",
    "conflict": "red",
    "error": "red",
}


def _console(stderr: bool = False) -> Console:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=False)


def _text(value: object, style: str = "") -> Text:
    """A cell: the value as it is, never read as rich markup (``[gatehouse]`` stays visible)."""
    from rich.text import Text

    return Text("-" if value is None or value == "" else str(value), style=style)


# When a table is too wide, prose columns give way first, then the names other than the first column
# (which says what the row is about) and that one last: a name stays whole on one line as long as
# the width allows at all, and is folded, never cut, when it does not.
_PROSE = frozenset({"reason", "actions", "title", "due", "done", "problems"})
_PROSE_FLOOR = 20
_NAME_FLOOR = 8
_GAP = 3  # between two columns: padding on either side of the (blank) rule of box.SIMPLE_HEAD


def _widths(columns: Sequence[str], rows: Sequence[Sequence[Text]], available: int) -> list[int]:
    """Each column's natural width, reduced (widest first, tier by tier) until the table fits."""
    widths = [
        max([len(name), *(len(line) for row in rows for line in row[i].plain.splitlines() or [""])])
        for i, name in enumerate(columns)
    ]
    floors = [
        min(w, _PROSE_FLOOR if name in _PROSE else _NAME_FLOOR)
        for name, w in zip(columns, widths, strict=True)
    ]
    tiers = [0 if name in _PROSE else 1 if i else 2 for i, name in enumerate(columns)]
    excess = sum(widths) + _GAP * (len(columns) - 1) - available
    for tier in (0, 1, 2):
        while excess > 0:
            shrinkable = [i for i, t in enumerate(tiers) if t == tier and widths[i] > floors[i]]
            if not shrinkable:
                break
            widest = max(shrinkable, key=lambda i: widths[i])
            widths[widest] -= 1
            excess -= 1
    return widths


def _print_table(
    console: Console, columns: Sequence[str], rows: Sequence[Sequence[Text]], *, title: str | None = None
) -> None:
    """A table that fits the console: long values wrap (names fold), nothing is cut."""
    from rich import box
    from rich.table import Table

    table = Table(
        title=_text(title) if title else None,
        box=box.SIMPLE_HEAD,
        title_justify="left",
        show_edge=False,
        pad_edge=False,
    )
    for name, width in zip(columns, _widths(columns, rows, console.width), strict=True):
        table.add_column(name, width=width, overflow="fold")
    for row in rows:
        table.add_row(*row)
    console.print(table)


def _where(name: str, detail: str, project: str = "") -> Text:
    """A name with what places it (region, kind) on a dim second line, the project on a third."""
    cell = _text(name)
    for extra in (detail, project):
        if extra:
            cell.append(f"\n{extra}", style="dim")
    return cell


def _place(key: str) -> tuple[str, str, str]:
    """``projects/P/locations/R/services/S`` -> ``(S, R, P)``; anything else as the service."""
    parts = key.split("/")
    if len(parts) == 6 and parts[0] == "projects":
        return parts[5], parts[3], parts[1]
    return key, "", ""


def _secret(name: str) -> tuple[str, str]:
    """``projects/P/secrets/S`` -> ``(S, P)``."""
    parts = name.split("/")
    if len(parts) >= 4 and parts[0] == "projects" and parts[2] == "secrets":
        return parts[3], parts[1]
    return name, ""


def _when(at: str) -> str:
    """RFC 3339 -> ``YYYY-MM-DD`` and ``HH:MM UTC`` on two lines: narrow enough for a column."""
    return f"{at[:10]}\n{at[11:16]} UTC" if len(at) >= 16 and at[10:11] == "T" else at


@contextlib.contextmanager
def progress_bar(label: str, *, enabled: bool = True) -> Iterator[Callable[[int, int | None], None]]:
    """A progress callback ``(done, total)`` drawn on stderr (a no-op when stderr is not a terminal)."""
    if not enabled or not sys.stderr.isatty():
        yield lambda done, total: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=_console(stderr=True),
        transient=True,
    ) as progress:
        task = progress.add_task(label, total=None)

        def update(done: int, total: int | None) -> None:
            progress.update(task, completed=done, total=total)

        yield update


def print_reports(
    reports: Sequence[Report], *, as_json: bool, applied: bool, console: Console | None = None
) -> None:
    """One row per service that is not unchanged: where it is, the result, the proxy, and the
    reason with (for a plan) the actions a run would take."""
    if as_json:
        for r in reports:
            plan = r.plan
            print(
                json.dumps(
                    {
                        "service": r.ref.key,
                        "proxy": plan.proxy if plan else r.outcome.proxy,
                        "result": r.outcome.result,
                        "reason": r.outcome.reason,
                        "actions": (plan.describe() + [p.describe() for p in r.products if p.writes])
                        if plan and not applied
                        else [],
                        "revision": r.outcome.revision,
                        "product": r.outcome.product,
                    },
                    sort_keys=True,
                )
            )
        return
    from rich.text import Text

    console = console or _console()
    counts: dict[str, int] = {}
    several_projects = len({r.ref.project for r in reports}) > 1
    rows: list[list[Text]] = []
    for r in reports:
        result = r.outcome.result
        counts[result] = counts.get(result, 0) + 1
        if result == "unchanged":
            continue
        what = Text(r.outcome.reason or "", style="dim")
        if r.plan and not applied:
            for line in r.plan.describe() + [p.describe() for p in r.products if p.writes]:
                what.append(f"\n- {line}", style="")
        proxy = _text((r.plan.proxy if r.plan else r.outcome.proxy) or "-", "bold")
        if r.outcome.product:
            proxy.append(f"\nproduct {r.outcome.product}", style="dim")
        rows.append(
            [
                _where(r.ref.service, r.ref.region, r.ref.project if several_projects else ""),
                _text(result, _STYLE.get(result, "")),
                proxy,
                what,
            ]
        )
    if rows:
        _print_table(console, ("service", "result", "proxy", "reason" if applied else "actions"), rows)
    summary = ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "no services"
    verb = "applied" if applied else "plan (nothing changed)"
    console.print(_text(f"{verb}: {summary}"))


def print_outcomes(
    outcomes: Sequence[Outcome], *, as_json: bool, selected: str = "", console: Console | None = None
) -> None:
    """One row per service: where it is, its last result and when, its proxy and why."""
    if as_json:
        for o in outcomes:
            print(json.dumps(asdict(o), sort_keys=True))
        return
    console = console or _console()
    if not outcomes:
        console.print(
            _text(f"no outcome recorded for {selected} yet" if selected else "no outcomes recorded yet")
        )
        return
    places = [_place(o.key) for o in outcomes]
    several_projects = len({p[2] for p in places}) > 1
    rows = []
    for o, (service, region, project) in zip(outcomes, places, strict=True):
        result = _text(o.result, _STYLE.get(o.result, ""))
        if o.at:
            result.append(f"\n{_when(o.at)}", style="dim")
        proxy = _text(o.proxy)
        if o.revision:
            proxy.append(f"\nrevision {o.revision}", style="dim")
        if o.product:
            proxy.append(f"\nproduct {o.product}", style="dim")
        rows.append(
            [
                _where(service, region, project if several_projects else ""),
                result,
                proxy,
                _text(o.reason, "dim"),
            ]
        )
    _print_table(console, ("service", "result", "proxy", "reason"), rows)


def print_tickets(tickets: Sequence[Any], *, console: Console | None = None) -> None:
    """The tickets as a table; their links below it, each on its own line and never cut."""
    from rich.text import Text

    console = console or _console()
    if not tickets:
        console.print("no tickets yet")
        return
    rows = []
    for t in tickets:
        state = t.state if not t.closed_reason else f"{t.state} ({t.closed_reason})"
        rows.append(
            [
                _text(t.id),
                _text(state, "green" if t.state == "open" else "dim"),
                _text(t.title),
                _text(t.comments),
            ]
        )
    _print_table(console, ("#", "state", "title", "comments"), rows)
    for t in tickets:
        if t.url:
            # soft_wrap: printed whole whatever the width; the terminal wraps it, a click opens it
            console.print(Text.assemble((f"#{t.id} ", "dim"), (str(t.url), "")), soft_wrap=True)


def print_rotation(report: Any, *, console: Console | None = None) -> None:
    """The summary table of a rotation run: every target, what was due, what was done."""
    from rich.text import Text

    console = console or _console()
    style = {
        "rotated": "green",
        "maintained": "green",
        "unchanged": "dim",
        "planned": "cyan",
        "busy": "yellow",
        "skipped": "dim",
        "failed": "red",
        "refused": "red",
    }
    secrets = [_secret(t.secret) for t in report.targets]
    several_projects = len({p for _, p in secrets}) > 1
    rows = []
    for t, (secret_id, project) in zip(report.targets, secrets, strict=True):
        done = ", ".join(a.step for a in t.actions if a.result in ("done", "already done"))
        rows.append(
            [
                _where(secret_id, t.kind or "", project if several_projects else ""),
                _text(t.status, style.get(t.status, "")),
                _text(", ".join(t.due)),
                _text(done),
                _text(t.reason, "dim"),
            ]
        )
    console.print(_text(f"rotation {report.run_id} ({report.mode})"))
    if rows:
        _print_table(console, ("secret", "status", "due", "done", "reason"), rows)
    for error in report.errors:
        console.print(Text.assemble(("error: ", "red"), str(error)))
    counts = ", ".join(f"{n} {k}" for k, n in report.counts().items()) or "no targets"
    console.print(_text(f"{'plan (nothing changed)' if report.mode == 'plan' else 'applied'}: {counts}"))


def print_inventory(inventory: Any, *, console: Console | None = None) -> None:
    """The inventory as tables that read at 80 columns: services (problems first), then the
    fleet-wide sections. Values pass through ``visible`` (no bidi override reorders a line)."""
    from rich.text import Text

    from gatehouse.inventory.render import visible

    def cell(value: object, style: str = "") -> Text:
        return _text(visible(value) if isinstance(value, str) else value, style)

    console = console or _console()
    summary = inventory.to_dict()["summary"]
    console.print(
        cell(
            f"inventory of {inventory.organization} at {inventory.generated_at}: "
            f"{summary['services']} services "
            f"({summary['opted_in']} opted in), {summary['with_problems']} with problems, "
            f"{summary['open_tickets']} open tickets"
        )
    )
    for failure in inventory.incomplete:
        console.print(Text.assemble(("incomplete: ", "red"), str(visible(failure))))
    several_projects = len({s.project for s in inventory.services}) > 1
    rows = []
    for s in inventory.services:
        proxy = cell(s.proxy.name if s.proxy else "-", "" if not s.proxy or s.proxy.owned else "red")
        if s.proxy:
            for d in s.proxy.deployments:
                proxy.append(
                    f"\n{d.environment} r{d.revision} {d.state}", style="red" if d.state == "ERROR" else "dim"
                )
        access = "-" if s.invoker is None else ("invoker" if s.invoker else "NO invoker")
        outcome = cell(
            s.outcome.result if s.outcome else "-", _STYLE.get(s.outcome.result, "") if s.outcome else "dim"
        )
        outcome.append(f"\n{access}", style="red" if s.invoker is False else "dim")
        what = cell(
            "\n".join(f"- {p}" for p in s.problems) if s.problems else ("ok" if s.opted_in else s.exposure)
        )
        if not s.problems:
            what.stylize("dim")
        rows.append([_where(s.name, s.region, s.project if several_projects else ""), proxy, outcome, what])
    if rows:
        console.print()
        _print_table(console, ("service", "proxy", "outcome", "problems"), rows, title="services")
    sections: list[tuple[str, tuple[str, ...], list[list[Text]]]] = [
        (
            "conflicts (hand-made proxies)",
            ("proxy", "service", "reason"),
            [[cell(c.proxy), cell(_place(c.service)[0]), cell(c.reason, "dim")] for c in inventory.conflicts],
        ),
        (
            "orphans (service gone)",
            ("proxy", "service", "reason"),
            [
                [
                    cell(o.proxy),
                    cell(_place(o.service)[0]),
                    cell("deployed in " + (", ".join(o.environments) or "nothing"), "dim"),
                ]
                for o in inventory.orphans
            ],
        ),
        (
            "drift",
            ("proxy", "service", "reason"),
            [[cell(d.proxy), cell(_place(d.service)[0]), cell(d.detail, "dim")] for d in inventory.drift],
        ),
        (
            "rotation targets",
            ("secret", "age", "due", "reason"),
            [
                [
                    _where(_secret(t.secret)[0], t.kind),
                    cell(
                        "-"
                        if t.current_age_days is None
                        else f"{t.current_age_days:g}/{t.period_days:g} d"
                        + "".join(
                            f"\nkey {k.age_days:g} d" + (" (off)" if k.disabled else "") for k in t.keys
                        )
                    ),
                    cell(_when(t.next_due) if t.next_due else "-", "red" if t.overdue else ""),
                    cell(
                        "\n".join(
                            [t.problem] * bool(t.problem)
                            + [
                                f"read by {_place(c.name)[0]} ({c.via} {c.detail} @ {c.version})"
                                for c in t.consumers
                            ]
                        ),
                        "dim",
                    ),
                ]
                for t in inventory.targets
            ],
        ),
        (
            "service accounts",
            ("identity", "role", "reason"),
            [
                [
                    cell(a.email),
                    cell(", ".join(a.roles)),
                    cell(
                        "\n".join(
                            filter(
                                None,
                                [
                                    f"{len(a.routes)} routes" if a.routes else "",
                                    f"may invoke {len(a.may_invoke)} services" if a.may_invoke else "",
                                    f"{len(a.keys)} keys" if a.keys else "",
                                    "secrets: " + ", ".join(_secret(x)[0] for x in a.secrets)
                                    if a.secrets
                                    else "",
                                ],
                            )
                        ),
                        "dim",
                    ),
                ]
                for a in inventory.accounts
            ],
        ),
        (
            "tickets",
            ("#", "state", "title"),
            [
                [cell(t.id), cell(t.state, "green" if t.state == "open" else "dim"), cell(t.title)]
                for t in inventory.tickets
            ],
        ),
    ]
    for title, columns, section_rows in sections:
        console.print()
        if section_rows:
            _print_table(console, columns, section_rows, title=title)
        else:
            console.print(cell(f"{title}: none", "dim"))
    console.print(
        cell("history of a service: gatehouse history SERVICE (see the JSON's history field)", "dim")
    )


def print_history(rows: Sequence[Any], *, resource: str, since: str, console: Console | None = None) -> None:
    """One row per event, sweep, command or run that touched the resource, oldest first."""
    from gatehouse.inventory.render import visible

    console = console or _console()
    if not rows:
        console.print(_text(f"nothing logged about {visible(resource)} in the last {since}"))
        return
    table = []
    for r in rows:
        outcome = _text(r.outcome, _STYLE.get(r.outcome, "red" if r.outcome in ("failed", "refused") else ""))
        table.append(
            [
                _text(_when(r.time[:19] + "Z" if len(r.time) >= 19 else r.time)),
                _where(r.trigger, r.correlation_id),
                outcome,
                _text("\n".join(f"- {visible(a)}" for a in r.actions), "dim"),
            ]
        )
    _print_table(console, ("time", "trigger", "outcome", "actions"), table)


def freeze_lines(record: Any, now: float) -> list[str]:
    """What ``status`` and ``rollout status`` say of the freeze document: the active freeze and the
    Scheduler jobs it paused; or an ended (or half-lifted) one whose jobs are still paused, which
    only ``gatehouse unfreeze`` resumes."""
    from datetime import UTC, datetime

    if record is None:
        return []
    jobs = ", ".join(_plain(j.rsplit("/", 1)[-1]) for j in record.paused_jobs)
    if record.active(now):
        until = datetime.fromtimestamp(record.until, UTC).isoformat()
        paused = f"; Scheduler jobs paused: {jobs}" if jobs else ""
        return [
            f"FROZEN until {until}: {_plain(record.reason)} "
            f"(by {_plain(record.by) or '?'}; rollouts and rotation held{paused})"
        ]
    if not jobs:
        return []
    if record.until:
        ended = datetime.fromtimestamp(record.until, UTC).isoformat()
        return [
            f"freeze ended {ended} but the Scheduler jobs it paused are still paused: {jobs}; "
            "`gatehouse unfreeze` resumes them"
        ]
    return [f"unfreeze did not resume the Scheduler jobs {jobs}; run `gatehouse unfreeze` again"]


def print_freeze_results(results: list[Any], *, lifted: bool) -> None:
    """One line per Scheduler job a freeze or an unfreeze touched (or meant to)."""
    import click

    if not results:
        click.echo("Scheduler jobs: none to " + ("resume" if lifted else "pause"))
    for r in results:
        detail = f" ({_plain(r.detail)})" if r.detail else ""
        click.echo(f"  {r.outcome:<16} {_plain(r.job)}{detail}")


def print_rollout(rollout: Any, frozen: Any, *, as_json: bool) -> None:
    """``gatehouse rollout status``: the rollout, its waves and every proxy's verdict; ``frozen`` is
    the freeze document (active or not), or None."""
    import click

    if as_json:
        click.echo(
            json.dumps(
                {
                    "rollout": rollout.to_dict() if rollout is not None else None,
                    "freeze": (
                        {**frozen.to_dict(), "active": frozen.active(time.time())}
                        if frozen is not None
                        else None
                    ),
                },
                sort_keys=True,
            )
        )
        return
    for line in freeze_lines(frozen, time.time()):
        click.echo(line)
    if rollout is None:
        click.echo("no rollout")
        return
    click.echo(
        f"rollout {rollout.id}: {rollout.state}, {rollout.source} -> {rollout.target}, "
        f"wave {rollout.wave + 1} of {rollout.wave_count}"
    )
    if rollout.reason:
        click.echo(f"  {_plain(rollout.reason)}")
    if rollout.ticket:
        click.echo(f"  ticket: {_plain(rollout.ticket)}")
    for index in range(rollout.wave_count):
        click.echo(f"wave {index + 1}:")
        for p in rollout.in_wave(index):
            verdict = f" {p.verdict.result}: {_plain(p.verdict.reason)}" if p.verdict else ""
            click.echo(f"  {p.member.proxy:<40} {p.state:<12}{verdict}")


def _plain(text: str) -> str:
    # a terminal line: no control characters from a reason or a person's freeze text
    return "".join(c if c.isprintable() else "?" for c in str(text))[:300]
