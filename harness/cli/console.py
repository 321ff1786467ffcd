"""What the command says besides its results: notes on stderr, the one error line, and the exit
status that tells a script some samples were left unscored."""

from __future__ import annotations

import sys
from typing import IO, Any

import click

# Samples that hit sandbox failures on every retry: the outputs are written, but not every sample
# is scored, so a script must not take the metrics as final.
UNSCORED_EXIT_STATUS = 3


def say(message: str) -> None:
    """A note for the user on stderr (stdout carries the results)."""
    click.echo(f"harness: {message}", err=True)


class CommandError(click.ClickException):
    """Shown as the one line ``harness: error: MESSAGE`` on stderr; exit status 1."""

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"harness: error: {self.message}", err=True)


def exit_if_unscored(infra_errors: int) -> None:
    if infra_errors:
        say(
            f"{infra_errors} sample(s) hit sandbox failures on every retry and are not scored "
            f"(null in results.json); rerun the same command to retry them"
        )
        sys.exit(UNSCORED_EXIT_STATUS)
