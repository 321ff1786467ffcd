"""taco-harness: fast, faithful, sandboxed evaluation of code LLMs on TACO.

The public API, for use from Python (each name is loaded on first use, so ``import harness`` costs
nothing and never loads Docker's SDK, torch or transformers):

* the flows, each writing what its command writes: ``evaluate`` (with ``load_tasks`` to read a
  generations file), ``generate``, ``run`` (both overlapped); ``discard_journals`` starts a run's
  directory over;
* problems: ``load_problems``, ``Selection``, ``Problem``, ``TaskSamples``;
* settings: ``EvaluationSettings``, ``RunLimits``, ``GenerationSettings``, ``SamplingSettings``,
  and where samples run: ``SandboxChoice`` / ``SandboxKind`` (``SandboxChoice().opener()`` opens a
  ``SandboxPool``, which runs an ``ExecutionJob``: one program on one problem's tests);
* results: ``EvaluationOutcome``, ``GenerationSummary``, ``RunOutcome``, ``SampleResult``,
  ``SampleStatus``, ``Verdict``; ``VerdictCache``, the persistent cache ``evaluate`` may use;
* errors: ``HarnessError``, the base of every error the harness raises on purpose, and its kinds.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public name -> the module that defines it.
_HOMES: dict[str, str] = {
    # the flows
    "evaluate": "harness.pipeline",
    "generate": "harness.pipeline",
    "run": "harness.pipeline",
    "load_tasks": "harness.pipeline",
    "discard_journals": "harness.pipeline",
    "RunOutcome": "harness.pipeline",
    # problems and samples
    "load_problems": "harness.data.problems",
    "Problem": "harness.data.problems",
    "Selection": "harness.data.problems",
    "TaskSamples": "harness.data.generations",
    # evaluation
    "EvaluationSettings": "harness.evaluation.plan",
    "EvaluationOutcome": "harness.evaluation.session",
    "ExecutionJob": "harness.evaluation.execution",
    "RunLimits": "harness.evaluation.execution",
    "VerdictCache": "harness.evaluation.cache",
    "SampleResult": "harness.judging.verdicts",
    "SampleStatus": "harness.judging.verdicts",
    "Verdict": "harness.judging.verdicts",
    # sandboxes
    "SandboxChoice": "harness.sandbox.choice",
    "SandboxKind": "harness.sandbox.choice",
    "SandboxPool": "harness.sandbox.pool",
    # generation
    "GenerationSettings": "harness.generation.plan",
    "SamplingSettings": "harness.generation.plan",
    "GenerationSummary": "harness.generation.generate",
    # errors
    "HarnessError": "harness.errors",
    "DatasetError": "harness.errors",
    "GenerationsError": "harness.errors",
    "SandboxError": "harness.errors",
    "SandboxUnavailable": "harness.errors",
    "ModelError": "harness.errors",
    "GenerationError": "harness.errors",
    "DeviceError": "harness.errors",
    "ReportError": "harness.errors",
}

__all__ = [
    "DatasetError",
    "DeviceError",
    "EvaluationOutcome",
    "EvaluationSettings",
    "ExecutionJob",
    "GenerationError",
    "GenerationSettings",
    "GenerationSummary",
    "GenerationsError",
    "HarnessError",
    "ModelError",
    "Problem",
    "ReportError",
    "RunLimits",
    "RunOutcome",
    "SampleResult",
    "SampleStatus",
    "SamplingSettings",
    "SandboxChoice",
    "SandboxError",
    "SandboxKind",
    "SandboxPool",
    "SandboxUnavailable",
    "Selection",
    "TaskSamples",
    "Verdict",
    "VerdictCache",
    "__version__",
    "discard_journals",
    "evaluate",
    "generate",
    "load_problems",
    "load_tasks",
    "run",
]

if TYPE_CHECKING:  # what type checkers and editors see; at run time __getattr__ loads each name
    from harness.data.generations import TaskSamples
    from harness.data.problems import Problem, Selection, load_problems
    from harness.errors import (
        DatasetError,
        DeviceError,
        GenerationError,
        GenerationsError,
        HarnessError,
        ModelError,
        ReportError,
        SandboxError,
        SandboxUnavailable,
    )
    from harness.evaluation.cache import VerdictCache
    from harness.evaluation.execution import ExecutionJob, RunLimits
    from harness.evaluation.plan import EvaluationSettings
    from harness.evaluation.session import EvaluationOutcome
    from harness.generation.generate import GenerationSummary
    from harness.generation.plan import GenerationSettings, SamplingSettings
    from harness.judging.verdicts import SampleResult, SampleStatus, Verdict
    from harness.pipeline import RunOutcome, discard_journals, evaluate, generate, load_tasks, run
    from harness.sandbox.choice import SandboxChoice, SandboxKind
    from harness.sandbox.pool import SandboxPool


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'harness' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # later lookups find it without coming here
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
