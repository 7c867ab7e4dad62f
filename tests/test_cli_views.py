"""What a person reads: the CLI's tables at 80 columns, with hostile values (rich markup in titles
and reasons, long names and URLs), and help texts that say what the commands print."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console

from gatehouse import cli_views
from gatehouse.adapters.trackers import TicketSummary
from gatehouse.cli import cli
from gatehouse.config import Policy
from gatehouse.ports import Outcome
from gatehouse.registration.plan import Deploy, GrantInvoker, ImportBundle, Plan, ServiceRef
from gatehouse.registration.service import Report
from gatehouse.rotation.report import Action, RunReport, TargetReport

WIDTH = 80
LONG_URL = "https://github.example.com/platform/apigee-routing-policies-for-every-team/issues/123456789"
HOSTILE = "[gatehouse] p99 [bold]latency[/bold] doubled on [red]orders[/] [/] [link=https://x]"


@pytest.fixture
def screen(monkeypatch: pytest.MonkeyPatch) -> Console:
    """The console the views print to: 80 columns, recorded."""
    console = Console(width=WIDTH, record=True, file=io.StringIO(), highlight=False, soft_wrap=False)
    monkeypatch.setattr(cli_views, "_console", lambda stderr=False: console)
    return console


def lines_of(console: Console) -> list[str]:
    return [line.rstrip() for line in console.export_text().splitlines()]


def column(lines: list[str], header: str) -> str:
    """The text of one column, as one line: tables have no vertical rules, so it is a slice of
    every line below the header row, up to where the next column's header starts."""
    head = next(i for i, line in enumerate(lines) if header in line.split())
    start = lines[head].index(header)
    rest = lines[head][start + len(header) :]
    end = start + len(header) + (len(rest) - len(rest.lstrip())) if rest.strip() else None
    return " ".join(" ".join(line[start:end] for line in lines[head + 2 :]).split())


def whole(lines: list[str], header: str) -> str:
    """A column's text with the folds undone (no whitespace at all)."""
    return "".join(column(lines, header).split())


def assert_readable(lines: list[str]) -> None:
    """Nothing cut with an ellipsis; every line but a link's fits in 80 columns."""
    text = "\n".join(lines)
    assert "…" not in text and "..." not in text, text
    too_wide = [line for line in lines if len(line) > WIDTH and "https://" not in line]
    assert not too_wide, text


def test_ticket_titles_keep_their_brackets_and_urls_are_never_cut(screen: Console) -> None:
    tickets = [
        TicketSummary(
            id="12", title=HOSTILE, state="open", closed_reason=None, url=LONG_URL, labels=("gatehouse",)
        ),
        TicketSummary(
            id="7",
            title="[gatehouse] route orders-4f2a9c1e to europe-west4 while europe-west1 is slow",
            state="closed",
            closed_reason="wontfix",
            url=LONG_URL.replace("123456789", "7"),
            labels=("gatehouse",),
            comments=3,
        ),
    ]
    cli_views.print_tickets(tickets)
    lines = lines_of(screen)
    text = "\n".join(lines)
    assert "[gatehouse] p99 [bold]latency[/bold]" in " ".join(text.split()), text
    assert "[gatehouse] route" in text, text
    assert any(LONG_URL in line for line in lines), text
    assert any(LONG_URL.replace("123456789", "7") in line for line in lines), text
    assert_readable(lines)


def ref(service: str, region: str = "europe-west1", project: str = "acme-prod") -> ServiceRef:
    return ServiceRef(project, region, service)


def test_status_shows_short_names_at_80_columns(screen: Console) -> None:
    outcomes = [
        Outcome(
            key=ref("orders-api").key,
            result="registered",
            reason="deployed revision 3 to test",
            proxy="orders-api-4f2a9c1e",
            revision=3,
            at="2026-12-06T07:00:00.123456+00:00",
        ),
        Outcome(
            key=ref("catalog", "us-east1").key,
            result="conflict",
            reason="base path /catalog [/] is served by handmade proxy [bold]legacy[/bold]",
            proxy="catalog-0b1c2d3e",
            at="2026-12-06T07:01:00+00:00",
        ),
    ]
    cli_views.print_outcomes(outcomes, as_json=False)
    lines = lines_of(screen)
    text = "\n".join(lines)
    assert "projects/" not in text, text
    for word in (
        "orders-api",
        "europe-west1",
        "us-east1",
        "orders-api-4f2a9c1e",
        "catalog-0b1c2d3e",
        "2026-12-06",
    ):
        assert word in text.split(), text
    assert "[bold]legacy[/bold]" in column(lines, "reason"), text
    assert_readable(lines)


def test_a_name_too_long_for_80_columns_is_folded_not_cut(screen: Console) -> None:
    service = "orders-fulfilment-backend-for-the-european-warehouses"
    outcomes = [Outcome(key=ref(service).key, result="registered", proxy=f"{service}-4f2a9c1e", revision=1)]
    cli_views.print_outcomes(outcomes, as_json=False)
    lines = lines_of(screen)
    assert service + "europe-west1" in whole(lines, "service"), "\n".join(lines)
    assert f"{service}-4f2a9c1e" in whole(lines, "proxy"), "\n".join(lines)
    assert_readable(lines)


def test_reconcile_plan_prints_one_row_per_service_with_its_actions(screen: Console) -> None:
    def report(service: str, result: str, reason: str, actions: tuple[object, ...] = ()) -> Report:
        plan = Plan(ref(service), f"{service}-4f2a9c1e", result, reason, actions)  # type: ignore[arg-type]
        return Report(ref(service), plan, Outcome(key=ref(service).key, result=result, reason=reason))

    reports = [
        report("orders", "create", "new service", (GrantInvoker(), ImportBundle(), Deploy("test", -1, None))),
        report("catalog", "conflict", "base path /catalog is used by [red]legacy[/]"),
        report("payments", "unchanged", "in sync"),
    ]
    cli_views.print_reports(reports, as_json=False, applied=False)
    lines = lines_of(screen)
    text = "\n".join(lines)
    assert "projects/" not in text, text
    rows = [line for line in lines if line.split()[:1] in (["orders"], ["catalog"])]
    assert [row.split()[0] for row in rows] == ["orders", "catalog"], text
    actions = column(lines, "actions")
    for action in reports[0].plan.describe():  # type: ignore[union-attr]
        assert f"- {action}" in actions, text
    assert "[red]legacy[/]" in actions, text
    assert "payments" not in text and "1 unchanged" in text, text
    assert_readable(lines)


def test_rotation_table_shows_secret_ids_and_keeps_brackets(screen: Console) -> None:
    now = datetime(2026, 12, 6, 7, 0, tzinfo=UTC)
    report = RunReport(
        run_id="run-20261206t070000-abc123",
        mode="plan",
        holder="local-1",
        started=now,
        finished=now,
        targets=(
            TargetReport(
                secret="projects/123456789012/secrets/orders-client-key",
                status="planned",
                kind="service_account_key",
                due=("rotate",),
                reason="current key is 91d old [period 90d]",
                actions=(Action(at=now, step="create", result="done"),),
            ),
        ),
        errors=("projects/acme-dev: secrets could not be listed: [403] denied",),
    )
    cli_views.print_rotation(report)
    lines = lines_of(screen)
    text = "\n".join(lines)
    flat = " ".join(text.split())
    assert "projects/123456789012/secrets" not in text, text
    assert "orders-client-key" in text.split(), text
    assert "[period 90d]" in column(lines, "reason") and "[403] denied" in flat, text
    assert_readable(lines)


@pytest.mark.parametrize(
    ("command", "says"),
    [
        (["render", "--help"], "environments"),
        (["demo", "--help"], "three tables"),
        (["reconcile", "--help"], "one row per service"),
    ],
)
def test_help_says_what_the_command_prints(command: list[str], says: str) -> None:
    result = CliRunner().invoke(cli, command, terminal_width=100)
    assert result.exit_code == 0, result.output
    assert says in " ".join(result.output.split()), result.output


def test_status_and_plan_show_the_product(screen: Console) -> None:
    outcome = Outcome(
        key=ref("ledger").key, result="registered", reason="ok", proxy="ledger-4f2a9c1e", product="payments"
    )
    cli_views.print_outcomes([outcome], as_json=False)
    assert "product payments" in column(lines_of(screen), "proxy")
    screen.export_text(clear=True)
    from gatehouse.registration.products import desired_product, plan_product

    joining = plan_product(
        desired_product(
            "payments",
            "ledger-4f2a9c1e",
            title=None,
            description=None,
            approval=None,
            access=None,
            environments=("test",),
        ),
        None,
        owner_id="me",
        policy=Policy.UPSERT_ONLY,
    )
    plan = Plan(ref("ledger"), "ledger-4f2a9c1e", "create", "new", (GrantInvoker(),))
    report = Report(ref("ledger"), plan, outcome, [joining])
    cli_views.print_reports([report], as_json=False, applied=False)
    lines = lines_of(screen)
    assert "- create API product payments" in column(lines, "actions"), "\n".join(lines)
    assert "product payments" in column(lines, "proxy")
    assert_readable(lines)


def test_render_writes_the_product_next_to_the_bundle(tmp_path: Path) -> None:
    service = Path(__file__).parent / "fixtures" / "services" / "v2-apikey.json"
    done = CliRunner().invoke(cli, ["render", str(service), "--out", str(tmp_path)])
    assert done.exit_code == 0, done.output
    printed = json.loads(done.output)
    written = json.loads((tmp_path / "apiproduct.json").read_text())
    assert printed["product"] == written["name"] and written["name"]
    configs = written["operationGroup"]["operationConfigs"]
    assert [c["apiSource"] for c in configs] == [printed["proxy"]]
    assert (tmp_path / "apiproxy").is_dir()
