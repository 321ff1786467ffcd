"""The ``harness`` command: a thin click layer over the library's flows (``harness.pipeline``).

One module per command (``evaluate``, ``generate``, ``run``, ``report``, ``sandbox``); the option
groups they share are in ``options``, the progress bars in ``progress``, and what the command says
besides its results (notes, the one error line, exit statuses) in ``console``.  Any ``HarnessError``
a command lets through becomes ``harness: error: MESSAGE`` on stderr and exit status 1.

The Docker SDK, torch and transformers are imported only by the commands (and sandbox kinds) that use
them: `harness generate`, and `harness run --sandbox namespace`, run on GPU machines without Docker.
"""

from __future__ import annotations

import importlib.metadata
import logging
from typing import Any

import click

from harness.cli.cache import cache_group
from harness.cli.compare import compare_command
from harness.cli.console import CommandError
from harness.cli.evaluate import evaluate_command
from harness.cli.generate import generate_command
from harness.cli.report import report_command
from harness.cli.run import run_command
from harness.cli.sandbox import sandbox_group
from harness.cli.train import train_command
from harness.errors import HarnessError

__all__ = ["main"]


class HarnessCommands(click.Group):
    """The command group that turns a ``HarnessError`` from any command into the one error line."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except HarnessError as exc:
            raise CommandError(str(exc)) from exc


def installed_version() -> str:
    try:
        return importlib.metadata.version("taco-harness")
    except importlib.metadata.PackageNotFoundError:  # a checkout on sys.path, not installed
        from harness import __version__

        return __version__


def _show_version(ctx: click.Context, _option: click.Parameter, wanted: bool) -> None:
    if wanted and not ctx.resilient_parsing:
        click.echo(f"harness {installed_version()}")
        ctx.exit()


@click.group(
    cls=HarnessCommands,
    commands=[
        evaluate_command,
        generate_command,
        run_command,
        report_command,
        sandbox_group,
        cache_group,
        compare_command,
        train_command,
    ],
)
@click.option("-v", "--verbose", is_flag=True, help="Log sandbox events.")
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_show_version,
    help="Show the version and exit.",
)
def main(verbose: bool) -> None:
    """Fast, faithful, sandboxed evaluation of code LLMs on TACO."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
