"""What the command says besides its results: notes on stderr, the one error line, the exit
status that tells a script some samples were left unscored, and a quiet Ctrl-C (exit status 130)."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import IO, Any

import click

# Samples that hit sandbox failures on every retry: the outputs are written, but not every sample
# is scored, so a script must not take the metrics as final.
UNSCORED_EXIT_STATUS = 3
# Ctrl-C, as a shell reports a process ended by SIGINT (128 + 2).
INTERRUPTED_EXIT_STATUS = 130

# Set by the first Ctrl-C: what follows is teardown (sandboxes closed under running jobs, workers
# stopped), so the progress bars stop counting and the sandbox pool's warnings are not shown.
INTERRUPTED = threading.Event()


def say(message: str) -> None:
    """A note for the user on stderr (stdout carries the results)."""
    click.echo(f"harness: {message}", err=True)


class CommandError(click.ClickException):
    """Shown as the one line ``harness: error: MESSAGE`` on stderr; exit status 1."""

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"harness: error: {self.message}", err=True)


class Interrupted(CommandError):
    """Ctrl-C: the one line ``harness: error: interrupted; ...`` and exit status 130."""

    exit_code = INTERRUPTED_EXIT_STATUS


@contextmanager
def quiet_interrupt() -> Iterator[None]:
    """While the block runs, Ctrl-C sets ``INTERRUPTED`` and mutes logging before it raises
    KeyboardInterrupt, so the teardown it starts (jobs ending on closed sandboxes) is not reported as
    sandbox failures or counted as progress."""
    INTERRUPTED.clear()

    def interrupt(signum: int, frame: FrameType | None) -> None:
        INTERRUPTED.set()
        logging.disable(logging.CRITICAL)
        raise KeyboardInterrupt

    try:
        previous: Any = signal.signal(signal.SIGINT, interrupt)
        installed = True
    except ValueError:  # not the main thread: Ctrl-C stays as it is
        installed = False
    try:
        yield
    finally:
        if installed:
            signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)
        logging.disable(logging.NOTSET)  # the teardown is over (this process may go on: a test, a notebook)


def exit_if_unscored(infra_errors: int) -> None:
    if infra_errors:
        say(
            f"{infra_errors} sample(s) are not scored (sandbox failures, or timeouts the machine's load caused, on every retry) "
            f"(null in results.json); rerun the same command to retry them"
        )
        sys.exit(UNSCORED_EXIT_STATUS)
