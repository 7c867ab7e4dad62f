"""Terminal output of the CLI: tables, plans and progress bars (rich), or JSON lines for scripts."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from gatehouse.ports import Outcome

if TYPE_CHECKING:
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


def _console(stderr: bool = False):  # type: ignore[no-untyped-def]
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=False)


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


def print_reports(reports: Sequence[Report], *, as_json: bool, applied: bool) -> None:
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
                        "actions": plan.describe() if plan and not applied else [],
                        "revision": r.outcome.revision,
                    },
                    sort_keys=True,
                )
            )
        return
    console = _console()
    counts: dict[str, int] = {}
    for r in reports:
        result = r.outcome.result
        counts[result] = counts.get(result, 0) + 1
        if result == "unchanged":
            continue
        style = _STYLE.get(result, "")
        proxy = (r.plan.proxy if r.plan else r.outcome.proxy) or "-"
        console.print(f"[{style}]{result:<12}[/] {r.ref.key}  →  proxy [bold]{proxy}[/]")
        console.print(f"             {r.outcome.reason}", style="dim", markup=False)
        if r.plan and not applied:
            for line in r.plan.describe():
                console.print(f"               - {line}", markup=False)
    summary = ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "no services"
    verb = "applied" if applied else "plan (nothing changed)"
    console.print(f"\n{verb}: {summary}")


def print_outcomes(outcomes: Sequence[Outcome], *, as_json: bool) -> None:
    if as_json:
        for o in outcomes:
            print(json.dumps(asdict(o), sort_keys=True))
        return
    from rich.table import Table

    table = Table("service", "result", "proxy", "rev", "when", "reason", show_lines=False)
    for o in outcomes:
        style = _STYLE.get(o.result, "")
        table.add_row(
            o.key, f"[{style}]{o.result}[/]", o.proxy or "-", str(o.revision or "-"), o.at, o.reason
        )
    console = _console()
    if not outcomes:
        console.print("no outcomes recorded yet")
        return
    console.print(table)


def print_tickets(tickets: Sequence[Any]) -> None:
    from rich.table import Table

    console = _console()
    if not tickets:
        console.print("no tickets yet")
        return
    table = Table("#", "state", "title", "comments", "url")
    for t in tickets:
        state = t.state if not t.closed_reason else f"{t.state} ({t.closed_reason})"
        style = "green" if t.state == "open" else "dim"
        table.add_row(
            t.id, f"[{style}]{state}[/]", t.title, str(t.comments if t.comments is not None else "-"), t.url
        )
    console.print(table)


def print_rotation(report: Any) -> None:
    """The summary table of a rotation run: every target, what was due, what was done."""
    from rich.table import Table

    console = _console()
    table = Table(
        "secret", "kind", "status", "due", "done", "reason", title=f"rotation {report.run_id} ({report.mode})"
    )
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
    for t in report.targets:
        done = ", ".join(a.step for a in t.actions if a.result in ("done", "already done")) or "-"
        due = ", ".join(t.due) or "-"
        table.add_row(
            t.secret, t.kind or "-", f"[{style.get(t.status, '')}]{t.status}[/]", due, done, t.reason
        )
    console.print(table)
    for error in report.errors:
        console.print(f"[red]error:[/] {error}", markup=True)
    counts = ", ".join(f"{n} {k}" for k, n in report.counts().items()) or "no targets"
    console.print(f"{'plan (nothing changed)' if report.mode == 'plan' else 'applied'}: {counts}")
