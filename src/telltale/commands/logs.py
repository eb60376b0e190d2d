"""Commands: `eval loghub` (template-mining grouping accuracy and throughput on Loghub sets)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from telltale.analyses.eval_loghub import evaluate_loghub
from telltale.commands.common import FORMATS, emit, user_errors
from telltale.commands.rootcause import eval_group


@click.command("loghub")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@click.option("--drain3/--no-drain3", "with_drain3", default=True, show_default=True,
              help="Also run drain3 (when installed) on the same lines for comparison.")
@user_errors
def eval_loghub_cmd(directory: Path, fmt: str, with_drain3: bool) -> None:
    """Grouping accuracy and lines/s of the template miner on each <Name>_2k.log in DIRECTORY
    (Loghub layout: the log plus <Name>_2k.log_structured*.csv), beside Drain's published GA
    and drain3 measured in the same run. Messages come from the CSV's Content column; its
    EventId is used only for scoring. The directory is only read."""
    evaluation = evaluate_loghub(directory, with_drain3=with_drain3)
    if fmt == "json":
        click.echo(json.dumps(evaluation.to_dict(), indent=2))
    else:
        emit(evaluation.to_rows(), fmt, limit=None)


def register(main: click.Group) -> None:
    """Add `loghub` to the `eval` group (defined with `eval nezha` in commands/rootcause.py)."""
    group = main.commands.get("eval")
    if not isinstance(group, click.Group):
        group = eval_group
        main.add_command(group)
    group.add_command(eval_loghub_cmd)
