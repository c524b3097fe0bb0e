"""`hisho notifications …`: the notification centre from the command line (`rules`: its rules)."""

from __future__ import annotations

import typer

from consumers.notification_rules import RULES, Rule

app = typer.Typer(help="The notification centre: its rules (and, later, deliveries).")

_HEADERS = ("EVENT", "RECIPIENTS", "WHEN", "CHANNELS", "PRIORITY")


def _row(rule: Rule) -> tuple[str, str, str, str, str]:
    channels = ",".join(channel.value for channel in rule.channels)
    return (rule.event, rule.recipients, rule.when or "always", channels, rule.priority.value)


def rules_table(rules: tuple[Rule, ...] = RULES) -> str:
    """The rules as an aligned table, one line per event type."""
    rows = [_HEADERS, *(_row(rule) for rule in rules)]
    widths = [max(len(row[col]) for row in rows) for col in range(len(_HEADERS))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


@app.command("rules")
def rules_command(
    why: bool = typer.Option(default=False, help="Add what each recipient does with it."),
) -> None:
    """List the notification rules: event, recipients, condition, default channels, priority.

    A person's preferences (`hisho people`) switch channels off or raise the minimum
    priority; nobody is notified of their own action.
    """
    typer.echo(rules_table())
    if why:
        typer.echo("")
        for rule in RULES:
            typer.echo(f"{rule.event}: {rule.why}")
