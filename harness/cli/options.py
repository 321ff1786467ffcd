"""The option groups that several commands share, each parsed into one frozen dataclass: the dataset
and its filters (``DatasetOptions``), the model and how it samples (``GenerationOptions``), and how
samples are judged and where they run (``EvaluationOptions``).

``ClusterOptions`` (``--cluster ray``, ``--ray-address``) says where the sandboxes run when they run
beyond this machine.

A group's decorator adds its options to a command and calls the command with one argument in their
place (``dataset=``, ``generation=``, ``evaluation=``).  Parsing only: nothing is read or loaded here.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from harness.cli.console import CommandError
from harness.cluster.choice import ClusterChoice, ClusterKind
from harness.data.problems import Selection
from harness.evaluation.cache import VerdictCache
from harness.evaluation.execution import RunLimits
from harness.evaluation.plan import JUDGES, EvaluationSettings
from harness.generation.factory import ModelEngineFactory
from harness.generation.plan import GenerationSettings, SamplingSettings
from harness.generation.workers import DeviceWorkers
from harness.sandbox.choice import SandboxChoice, SandboxKind

Command = Callable[..., None]


@dataclass(frozen=True)
class DatasetOptions:
    source: str  # --dataset: a hub id, a directory or a file
    split: str
    selection: Selection


@dataclass(frozen=True)
class GenerationOptions:
    engine_factory: ModelEngineFactory  # the generation settings, the engine, its batch size and check interval
    gpus: str  # a device spec, resolved when the command runs (it needs torch)
    device_workers: DeviceWorkers = DeviceWorkers.THREADS  # how several local devices' workers run

    @property
    def settings(self) -> GenerationSettings:
        return self.engine_factory.settings


@dataclass(frozen=True)
class EvaluationOptions:
    settings: EvaluationSettings  # its sandbox_id is set from `sandbox` by the flow that evaluates
    sandbox: SandboxChoice
    use_cache: bool

    def verdict_cache(self) -> AbstractContextManager[VerdictCache | None]:
        """The persistent verdict cache, or none (--no-cache)."""
        return VerdictCache() if self.use_cache else nullcontext()


@dataclass(frozen=True)
class ClusterOptions:
    choice: ClusterChoice | None  # None: sandboxes on this machine only


def dataset_options(command: Command) -> Command:
    """The dataset and its filters, shared by every command that reads problems."""

    @functools.wraps(command)
    def with_dataset(
        *,
        dataset: str,
        split: str,
        difficulties: tuple[str, ...],
        skills: tuple[str, ...],
        indices: str | None,
        limit: int | None,
        **others: Any,
    ) -> None:
        ids, in_ranges = parse_index_ranges(indices)
        selection = Selection(tuple(difficulties), tuple(skills), ids, limit, in_ranges)
        command(dataset=DatasetOptions(dataset, split, selection), **others)

    return _with_options(
        with_dataset,
        [
            click.option(
                "--dataset", required=True, help="Hub id, save_to_disk/arrow/parquet directory, or .json/.jsonl/.parquet file."
            ),
            click.option("--split", default="test", show_default=True, help="Dataset split."),
            click.option("--difficulty", "difficulties", multiple=True, help="Keep this difficulty (repeatable; any case)."),
            click.option(
                "--skill", "skills", multiple=True, help="Keep problems with this skill_types entry (repeatable; any case)."
            ),
            click.option(
                "--indices",
                default=None,
                help="Keep these task ids: '0,5,10-20' (a range keeps the ids the dataset has in it).",
            ),
            click.option("--limit", type=click.IntRange(min=1), default=None, help="Keep the first N problems after filtering."),
        ],
    )


def generation_options(command: Command) -> Command:
    """The model and how it samples, shared by `generate` and `run`."""

    @functools.wraps(command)
    def with_generation(
        *,
        model: str,
        n: int,
        temperature: float,
        top_p: float,
        top_k: int,
        max_new_tokens: int,
        seed: int,
        dtype: str,
        batch_size: str,
        gpus: str,
        device_workers: str,
        engine: str,
        check_every: int,
        chat_template: bool,
        system_prompt: str | None,
        extract_code: bool,
        quantize: str,
        kv_cache: str,
        **others: Any,
    ) -> None:
        if system_prompt is not None and not chat_template:
            raise CommandError("--system-prompt needs --chat-template")
        sampling = SamplingSettings(temperature, top_k, top_p, seed)
        settings = GenerationSettings(
            model, n, max_new_tokens, sampling, dtype, chat_template, system_prompt, extract_code, quantize, kv_cache
        )
        factory = ModelEngineFactory(settings, engine, parse_batch_size(batch_size), check_every)
        command(generation=GenerationOptions(factory, gpus, DeviceWorkers(device_workers)), **others)

    return _with_options(
        with_generation,
        [
            click.option(
                "--model", required=True, help="Local Hugging Face model directory (a hub id works if it is cached or reachable)."
            ),
            click.option("--n", "n", type=click.IntRange(min=1), default=20, show_default=True, help="Samples per problem."),
            click.option("--temperature", type=click.FloatRange(min=0), default=0.2, show_default=True, help="0 means greedy."),
            click.option("--top-p", type=click.FloatRange(min=0, max=1, min_open=True), default=0.95, show_default=True),
            click.option(
                "--top-k", type=click.IntRange(min=0), default=50, show_default=True, help="generate's default; 0 turns it off."
            ),
            click.option("--max-new-tokens", type=click.IntRange(min=1), default=2048, show_default=True),
            click.option(
                "--seed",
                type=int,
                default=0,
                show_default=True,
                help="Per-sample seeds derive from (seed, task_id, sample index).",
            ),
            click.option("--dtype", type=click.Choice(["bfloat16", "float16", "float32"]), default="bfloat16", show_default=True),
            click.option(
                "--batch-size",
                default="auto",
                show_default=True,
                help="Rows (fast engine: slots) per device, or 'auto' from free GPU memory.",
            ),
            click.option(
                "--gpus",
                default="all",
                show_default=True,
                help="'all', 'cpu', a count N, or device indices '0,2': one worker each (see --device-workers).",
            ),
            click.option(
                "--device-workers",
                type=click.Choice([mode.value for mode in DeviceWorkers]),
                default=DeviceWorkers.THREADS.value,
                show_default=True,
                help="With several devices: a thread each in this process (no start-up cost), or a spawned process "
                "each (isolated from another's crash in native code, and no shared GIL: better for many GPUs with "
                "small models).",
            ),
            click.option(
                "--engine",
                type=click.Choice(["auto", "fast", "hf"]),
                default="auto",
                show_default=True,
                help="auto: fast where the model is supported, else hf (model.generate).",
            ),
            click.option(
                "--check-every",
                type=click.IntRange(min=1),
                default=16,
                show_default=True,
                help="Decode steps between checks for EOS and the EOF strings.",
            ),
            click.option(
                "--chat-template",
                is_flag=True,
                help="Instruct models: give the official prompt as a user message in the tokenizer's chat template.",
            ),
            click.option("--system-prompt", default=None, help="A system message before the prompt (with --chat-template)."),
            click.option(
                "--extract-code",
                is_flag=True,
                help="Take each program from the first fenced code block of its output (else the whole output).",
            ),
            click.option(
                "--quantize",
                type=click.Choice(["none", "fp8", "int8"]),
                default="none",
                show_default=True,
                help="Fast engine weights: fp8 (e4m3, Ada/Hopper GPUs only) or int8 weight-only (less memory, slower).",
            ),
            click.option(
                "--kv-cache",
                type=click.Choice(["model", "fp8"]),
                default="model",
                show_default=True,
                help="Fast engine K/V cache: the model's dtype, or fp8 (e4m3 with a scale per vector, Ada/Hopper GPUs "
                "only): about 30% less GPU memory at about the same speed.",
            ),
        ],
    )


def evaluation_options(command: Command) -> Command:
    """How samples are judged and where they run, shared by `evaluate` and `run`."""

    @functools.wraps(command)
    def with_evaluation(
        *,
        workers: int | None,
        timeout: float,
        judge: str,
        all_tests: bool,
        no_corrected: bool,
        no_dedup: bool,
        no_cache: bool,
        memory_mb: int,
        sandbox: str,
        **others: Any,
    ) -> None:
        settings = EvaluationSettings(
            RunLimits(timeout_s=timeout), early_exit=not all_tests, dedup=not no_dedup, judge=judge, corrected=not no_corrected
        )
        choice = SandboxChoice(SandboxKind(sandbox), workers, memory_mb)
        command(evaluation=EvaluationOptions(settings, choice, use_cache=not no_cache), **others)

    return _with_options(
        with_evaluation,
        [
            click.option("--workers", type=click.IntRange(min=1), default=None, help="Sandboxes at once (default: CPU count)."),
            click.option("--timeout", type=click.FloatRange(min=0.1), default=4.0, show_default=True, help="Seconds per test."),
            click.option("--judge", type=click.Choice(JUDGES), default="taco", show_default=True, help="Verdict semantics."),
            click.option("--all-tests", is_flag=True, help="Run every test (no early exit at a sample's first failure)."),
            click.option(
                "--no-corrected",
                is_flag=True,
                help="Only the chosen judge: no results_corrected.json, no corrected/disagreements blocks in metrics.json.",
            ),
            click.option("--no-dedup", is_flag=True, help="Execute identical programs of a task separately."),
            click.option("--no-cache", is_flag=True, help="Neither read nor write the persistent verdict cache."),
            click.option("--memory-mb", type=click.IntRange(min=64), default=2048, show_default=True, help="Memory per sandbox."),
            click.option(
                "--sandbox",
                type=click.Choice([k.value for k in SandboxKind]),
                default="docker",
                show_default=True,
                help="docker: a locked-down container per sandbox.  namespace: Linux namespaces on this machine, "
                "for machines without Docker (root; weaker isolation).",
            ),
        ],
    )


def cluster_options(command: Command) -> Command:
    """Where the sandboxes run beyond this machine, shared by `evaluate` and `run`."""

    @functools.wraps(command)
    def with_cluster(*, cluster_kind: str | None, ray_address: str | None, **others: Any) -> None:
        if cluster_kind is None:
            if ray_address is not None:
                raise CommandError("--ray-address needs --cluster ray")
            command(cluster=ClusterOptions(None), **others)
            return
        choice = ClusterChoice(ClusterKind(cluster_kind), ray_address)
        if choice.resolved_address() is None:
            raise CommandError("--cluster ray needs the head node's address: --ray-address HOST:PORT or RAY_ADDRESS")
        if importlib.util.find_spec("ray") is None:
            raise CommandError("--cluster ray needs Ray on this machine: pip install '.[ray]'")
        command(cluster=ClusterOptions(choice), **others)

    return _with_options(
        with_cluster,
        [
            click.option(
                "--cluster",
                "cluster_kind",
                type=click.Choice([k.value for k in ClusterKind]),
                default=None,
                help="Use a Ray cluster: sandboxes on every node that offers the taco_sandbox_host resource (--workers is "
                "then sandboxes per node), and one generation worker per GPU of the cluster (--gpus is not used).",
            ),
            click.option(
                "--ray-address",
                default=None,
                help="The Ray head's address (HOST:PORT); default $RAY_ADDRESS.",
            ),
        ],
    )


def _with_options(command: Command, options: Sequence[Callable[[Command], Command]]) -> Command:
    # Applied last to first, so that --help lists them in the order written.
    for option in reversed(options):
        command = option(command)
    return command


def parse_index_ranges(text: str | None) -> tuple[tuple[int, ...] | None, frozenset[int]]:
    """--indices as the task ids it names, and those of them that came from a range (which a sparse
    subset file may lack without an error)."""
    if text is None:
        return None, frozenset()
    ids: list[int] = []
    in_ranges: set[int] = set()
    singles: set[int] = set()
    try:
        for part in filter(None, (p.strip() for p in text.split(","))):
            if "-" in part[1:]:
                low, high = part.split("-", 1)
                span = range(int(low), int(high) + 1)
                ids.extend(span)
                in_ranges.update(span)
            else:
                ids.append(int(part))
                singles.add(ids[-1])
    except ValueError:
        raise CommandError(f"--indices: expected numbers and ranges like '0,5,10-20', got {text!r}") from None
    return tuple(ids), frozenset(in_ranges - singles)


def parse_batch_size(text: str) -> int | None:
    """--batch-size: a positive integer, or None for 'auto' (sized from free GPU memory)."""
    if text == "auto":
        return None
    if text.isdigit() and int(text) > 0:
        return int(text)
    raise CommandError(f"--batch-size: expected 'auto' or a positive integer, got {text!r}")


def check_output_directory(output: Path) -> None:
    """--output of evaluate and run: a directory that exists or can be created and written, checked
    before anything expensive starts (a model, sandboxes)."""
    if output.exists() and not output.is_dir():
        raise CommandError(f"--output must be a directory: {output} is a file")
    _check_creatable(output, "--output")


def check_output_file(output: Path) -> None:
    """--output of generate: a file (not a directory) that can be written, with its journal beside it."""
    if output.is_dir():
        raise CommandError(f"--output must be a file (the generations.json to write): {output} is a directory")
    _check_creatable(output.parent, "--output")


def _check_creatable(path: Path, option: str) -> None:
    """*path* exists as a writable directory, or could be created: its nearest existing ancestor is a
    writable directory."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise CommandError(f"{option}: cannot create {path}: {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        what = "write in" if existing == path else "create"
        raise CommandError(f"{option}: cannot {what} {path}: {existing} is not writable")
