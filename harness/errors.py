"""Every error the harness raises on purpose, in one place.

``HarnessError`` is the base of each of them: the command line turns one into a single
``harness: error: ...`` line and a non-zero exit, and a library caller can catch them all at once.
The message is written for the user: it says what is wrong and, where there is one, what to do.

Two families matter for correctness.  Bad *input* (a dataset, a generations file, a model) is the
user's to fix.  A *sandbox* failure is infrastructure: it is retried on a fresh sandbox and never
scored as a wrong answer.
"""

from __future__ import annotations


class HarnessError(Exception):
    """Base of every error the harness reports to its user."""


# -- input ------------------------------------------------------------------------------------
class DatasetError(HarnessError, ValueError):
    """The dataset cannot be found, read, or does not fit the request."""


class TestDataError(DatasetError):
    """A problem's ``input_output`` cannot be read at all."""

    __test__ = False  # not a pytest test class, whatever its name


class GenerationsError(HarnessError, ValueError):
    """A generations file cannot be read, or does not match the problems."""


class PromptError(HarnessError, ValueError):
    """A dataset row from which no prompt can be made."""


# -- sandboxes ---------------------------------------------------------------------------------
class SandboxError(HarnessError, RuntimeError):
    """A sandbox died, stopped answering or broke the protocol: infrastructure, never a verdict."""


class SandboxUnavailable(HarnessError, RuntimeError):
    """The chosen kind of sandbox cannot run here (no daemon, no image, not root, ...)."""


class DockerUnavailable(SandboxUnavailable):
    """No Docker daemon answers."""


class ImageBuildError(SandboxUnavailable):
    """The sandbox image could not be built."""


class SandboxNotInstalled(SandboxUnavailable):
    """The chosen kind of sandbox needs a Python package that is not installed here."""


class ClusterUnavailable(SandboxUnavailable):
    """No usable sandbox host in the cluster (none reachable, none offering sandboxes, every one refused)."""


# -- generation ---------------------------------------------------------------------------------
class ModelError(HarnessError, RuntimeError):
    """The model or tokenizer cannot be loaded or used."""


class GenerationError(HarnessError, RuntimeError):
    """A generation run cannot start or complete (bad journal, a worker failed, samples missing)."""


class ModelNotFound(ModelError):
    """The model named is neither a model directory nor a hub id."""


class DeviceError(HarnessError, ValueError):
    """The devices asked for (``--gpus``) are not understood or not visible on this machine."""


# -- outputs ----------------------------------------------------------------------------------
class ReportError(HarnessError):
    """A report cannot be made from the given files."""
