"""The ``harness`` command: a thin click layer over the library."""

from __future__ import annotations

import logging
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import click

from harness.data.generations import join_by_task_id, load_generations
from harness.data.problems import Selection, load_problems, load_split, select
from harness.errors import (
    DatasetError,
    DockerUnavailable,
    GenerationError,
    GenerationsError,
    ImageBuildError,
    ModelError,
    PromptError,
    ReportError,
    SandboxUnavailable,
)
from harness.evaluation.cache import VerdictCache
from harness.evaluation.execution import RunLimits
from harness.evaluation.session import (
    JUDGES,
    EvaluationSettings,
    Progress,
    evaluate,
    write_outputs,
)
from harness.evaluation.verdict_journal import VerdictJournal
from harness.reporting.monitor import evaluation_run_stats, write_run_stats
from harness.sandbox.choice import SandboxChoice, SandboxKind

# The Docker SDK, torch and transformers are imported only by the commands (and sandbox kinds) that
# use them: `harness generate`, and `harness run --sandbox namespace`, run on GPU machines without
# Docker.


def _say(message: str) -> None:
    click.echo(f"harness: {message}", err=True)


class _Fail(click.ClickException):
    def show(self, file=None) -> None:
        click.echo(f"harness: error: {self.message}", err=True)


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log sandbox events.")
def main(verbose: bool) -> None:
    """Fast, faithful, sandboxed evaluation of code LLMs on TACO."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


@main.group()
def sandbox() -> None:
    """Manage the sandbox image and containers."""


@sandbox.command("build")
@click.option("--base-image", default=None, help="Base image (default python:3.11-slim; offline: a local Debian base).")
def sandbox_build(base_image: str | None) -> None:
    """Build the sandbox image (cached by content) and print its tag."""
    from harness.sandbox.docker.backend import connect
    from harness.sandbox.docker.image import ensure_image

    try:
        click.echo(ensure_image(connect(), base_image, say=_say))
    except (DockerUnavailable, ImageBuildError) as exc:
        raise _Fail(str(exc)) from exc


@sandbox.command("prune")
def sandbox_prune() -> None:
    """Remove sandbox containers left behind by earlier runs."""
    from harness.sandbox.docker.backend import prune

    try:
        click.echo(f"removed {prune()} sandbox container(s)")
    except DockerUnavailable as exc:
        raise _Fail(str(exc)) from exc


def dataset_options(command):
    """The dataset and its filters, shared by every command that reads problems."""
    options = [
        click.option("--dataset", required=True, help="Hub id, save_to_disk/arrow/parquet directory, or .json/.jsonl/.parquet file."),
        click.option("--split", default="test", show_default=True, help="Dataset split."),
        click.option("--difficulty", "difficulties", multiple=True, help="Keep this difficulty (repeatable)."),
        click.option("--skill", "skills", multiple=True, help="Keep problems with this skill_types entry (repeatable)."),
        click.option("--indices", default=None, help="Keep these task ids: '0,5,10-20'."),
        click.option("--limit", type=click.IntRange(min=1), default=None, help="Keep the first N problems after filtering."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def parse_indices(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    ids: list[int] = []
    try:
        for part in filter(None, (p.strip() for p in text.split(","))):
            if "-" in part[1:]:
                low, high = part.split("-", 1)
                ids.extend(range(int(low), int(high) + 1))
            else:
                ids.append(int(part))
    except ValueError:
        raise _Fail(f"--indices: expected numbers and ranges like '0,5,10-20', got {text!r}") from None
    return tuple(ids)


def selection_from(difficulties, skills, indices, limit) -> Selection:
    return Selection(tuple(difficulties), tuple(skills), parse_indices(indices), limit)


def evaluation_options(command):
    """How samples are judged and where they run, shared by `evaluate` and `run`."""
    options = [
        click.option("--workers", type=click.IntRange(min=1), default=None, help="Sandboxes at once (default: CPU count)."),
        click.option("--timeout", type=click.FloatRange(min=0.1), default=4.0, show_default=True, help="Seconds per test."),
        click.option("--judge", type=click.Choice(JUDGES), default="taco", show_default=True, help="Verdict semantics."),
        click.option("--all-tests", is_flag=True, help="Run every test (no early exit at a sample's first failure)."),
        click.option("--no-dedup", is_flag=True, help="Execute identical programs of a task separately."),
        click.option("--no-cache", is_flag=True, help="Neither read nor write the persistent verdict cache."),
        click.option("--memory-mb", type=click.IntRange(min=64), default=2048, show_default=True, help="Memory per sandbox."),
        click.option(
            "--sandbox", type=click.Choice([k.value for k in SandboxKind]), default="docker", show_default=True,
            help="docker: a locked-down container per sandbox.  namespace: Linux namespaces on this machine, "
            "for machines without Docker (root; weaker isolation).",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def evaluation_setup(workers, timeout, judge, all_tests, no_dedup, memory_mb, sandbox) -> tuple[EvaluationSettings, SandboxChoice]:
    choice = SandboxChoice(SandboxKind(sandbox), workers, memory_mb)
    try:
        identity = choice.identity()
    except ImportError as exc:
        raise _Fail(f"--sandbox {sandbox} needs {exc.name} (pip install -e . on this machine)") from exc
    settings = EvaluationSettings(
        RunLimits(timeout_s=timeout), early_exit=not all_tests, dedup=not no_dedup, judge=judge, sandbox_id=identity
    )
    return settings, choice


@main.command("evaluate")
@dataset_options
@click.option("--generations", required=True, type=click.Path(path_type=Path), help="Official generations.json, or JSONL of the same objects.")
@click.option("--output", required=True, type=click.Path(path_type=Path), help="Directory for results.json, metrics.json and the journal.")
@evaluation_options
@click.option("--restart", is_flag=True, help="Discard OUTPUT's journal instead of resuming from it.")
@click.option("--allow-partial", is_flag=True, help="Allow selected tasks without generations and ids outside the dataset.")
def evaluate_command(
    dataset, split, difficulties, skills, indices, limit, generations, output, workers, timeout, judge,
    all_tests, no_dedup, no_cache, memory_mb, sandbox, restart, allow_partial,
):
    """Evaluate TACO generations; write results.json and metrics.json (TACO formats) to OUTPUT.

    Rerunning the same command resumes from OUTPUT/journal.jsonl.
    """
    selection = selection_from(difficulties, skills, indices, limit)
    try:
        split_problems = load_split(dataset, split)
        problems = select(split_problems, selection, dataset)
        tasks = join_by_task_id(
            problems, load_generations(generations), allow_partial, {p.task_id for p in split_problems}
        )
    except (DatasetError, GenerationsError) as exc:
        raise _Fail(str(exc)) from exc
    _check_output_directory(output)
    settings, choice = evaluation_setup(workers, timeout, judge, all_tests, no_dedup, memory_mb, sandbox)
    journal_path = output / "journal.jsonl"
    if restart and journal_path.exists():
        journal_path.unlink()
    total = sum(len(t.outputs) for t in tasks)
    try:
        with VerdictJournal(journal_path) as journal, _maybe_cache(not no_cache) as cache, _evaluation_bar(total) as on_progress:
            outcome = evaluate(tasks, choice.opener(_say), settings, journal, cache, on_progress)
    except SandboxUnavailable as exc:
        raise _Fail(f"{exc} (finished samples are kept in {journal_path})") from exc
    except KeyboardInterrupt:
        raise _Fail(f"interrupted; rerun the same command to resume from {journal_path}") from None
    write_outputs(outcome, output)
    write_run_stats(output, evaluation_run_stats(outcome))
    shown = {k: round(v, 4) for k, v in outcome.metrics.items() if k.startswith("pass@")}
    click.echo(
        f"{shown}  {total} samples, {outcome.jobs} distinct programs "
        f"({outcome.executed} run, {outcome.from_cache} cached, {outcome.from_journal} resumed) "
        f"in {outcome.seconds:.1f}s -> {output}"
    )
    _report_after_evaluate(output)
    _exit_on_infra_errors(outcome.infra_errors)


def _check_output_directory(output: Path) -> None:
    if output.exists() and not output.is_dir():
        raise _Fail(f"--output must be a directory: {output} is a file")


def _exit_on_infra_errors(count: int) -> None:
    if count:
        _say(f"{count} sample(s) hit sandbox failures on every retry and are not scored "
             f"(null in results.json); rerun the same command to retry them")
        sys.exit(3)


@contextmanager
def _evaluation_bar(total: int, position: int = 0):
    """A tqdm bar of samples evaluated, with tests/s over the tests actually run."""
    from tqdm import tqdm

    meter = _TestsMeter()
    with tqdm(total=total, unit="sample", desc="evaluate", file=sys.stderr, dynamic_ncols=True, position=position) as bar:

        def on_progress(progress: Progress) -> None:
            bar.update(progress.samples)
            meter.add(progress)
            bar.set_postfix_str(meter.text(), refresh=False)

        yield on_progress


class _TestsMeter:
    """The evaluation bar's postfix: tests/s over the tests actually executed (journal and cache
    hits are not work), sandboxes up, and the host process's resident memory."""

    def __init__(self) -> None:
        self.started: float | None = None
        self.tests = 0
        self.sandboxes = 0

    def add(self, progress: Progress) -> None:
        self.sandboxes = progress.sandboxes
        if progress.source != "run":
            return
        if self.started is None:
            self.started = time.monotonic()
        self.tests += progress.tests

    def text(self) -> str:
        if self.started is None:
            return ""
        elapsed = max(time.monotonic() - self.started, 1e-6)
        return f"{self.tests / elapsed:.0f} tests/s, {self.sandboxes} sandboxes, host {_rss_mib():.0f} MiB"


def _rss_mib() -> float:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return 0.0


@contextmanager
def _maybe_cache(enabled: bool):
    if not enabled:
        yield None
        return
    with VerdictCache() as cache:
        yield cache


@main.command("report")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
def report_command(directory: Path) -> None:
    """Write report.md, report.html and PNG plots for an evaluation output DIRECTORY."""
    from harness.reporting.report import write_report

    try:
        files = write_report(directory)
    except ReportError as exc:
        raise _Fail(str(exc)) from exc
    click.echo(f"report: {files.html} {files.markdown}")


def _report_after_evaluate(output: Path) -> None:
    """The report is a convenience on top of results.json and metrics.json, already written: any
    failure of it is a warning, never a lost or failed evaluation."""
    from harness.reporting.report import write_report

    try:
        files = write_report(output)
    except Exception as exc:  # noqa: BLE001 - see the docstring
        first_line = next(iter(str(exc).splitlines()), "")
        _say(f"warning: no report ({type(exc).__name__}: {first_line}); retry with `harness report {output}`")
        return
    click.echo(f"report: {files.html} {files.markdown}")



def _devices(spec: str) -> tuple[str, ...]:
    """--gpus: 'all' (every visible GPU, or the CPU without CUDA), 'cpu', a count 'N', or indices '0,2'."""
    import torch

    available = torch.cuda.device_count() if torch.cuda.is_available() else 0
    spec = spec.strip().lower()
    if spec == "cpu" or (spec == "all" and available == 0):
        return ("cpu",)
    if spec == "all":
        return tuple(f"cuda:{i}" for i in range(available))
    try:
        indices = list(range(int(spec))) if spec.isdigit() else [int(part) for part in spec.split(",") if part.strip()]
    except ValueError:
        raise _Fail(f"--gpus: expected 'all', 'cpu', a count or indices like '0,2', got {spec!r}") from None
    if not indices or max(indices) >= available or min(indices) < 0:
        raise _Fail(f"--gpus {spec}: {available} CUDA device(s) visible")
    return tuple(f"cuda:{i}" for i in dict.fromkeys(indices))


def generation_options(command):
    """The model and how it samples, shared by `generate` and `run`."""
    options = [
        click.option("--model", required=True, help="Local Hugging Face model directory (a hub id works if it is cached or reachable)."),
        click.option("--n", "n", type=click.IntRange(min=1), default=20, show_default=True, help="Samples per problem."),
        click.option("--temperature", type=click.FloatRange(min=0), default=0.2, show_default=True, help="0 means greedy."),
        click.option("--top-p", type=click.FloatRange(min=0, max=1, min_open=True), default=0.95, show_default=True),
        click.option("--top-k", type=click.IntRange(min=0), default=50, show_default=True, help="generate's default; 0 turns it off."),
        click.option("--max-new-tokens", type=click.IntRange(min=1), default=2048, show_default=True),
        click.option("--seed", type=int, default=0, show_default=True, help="Per-sample seeds derive from (seed, task_id, sample index)."),
        click.option("--dtype", type=click.Choice(["bfloat16", "float16", "float32"]), default="bfloat16", show_default=True),
        click.option("--batch-size", default="auto", show_default=True, help="Rows (fast engine: slots) per device, or 'auto' from free GPU memory."),
        click.option("--gpus", default="all", show_default=True, help="'all', 'cpu', a count N, or device indices '0,2': one worker process each."),
        click.option("--engine", type=click.Choice(["auto", "fast", "hf"]), default="auto", show_default=True, help="auto: fast where the model is supported, else hf (model.generate)."),
        click.option("--check-every", type=click.IntRange(min=1), default=16, show_default=True, help="Decode steps between checks for EOS and the EOF strings."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def generation_setup(model, n, temperature, top_p, top_k, max_new_tokens, seed, dtype, batch_size, gpus, engine, check_every):
    """Validated generation settings, the engine factory and the devices."""
    from harness.generation.factory import ModelEngineFactory
    from harness.generation.plan import GenerationSettings, SamplingSettings

    if batch_size == "auto":
        rows = None
    elif batch_size.isdigit() and int(batch_size) > 0:
        rows = int(batch_size)
    else:
        raise _Fail(f"--batch-size: expected 'auto' or a positive integer, got {batch_size!r}")
    if Path(model).is_dir():
        if not (Path(model) / "config.json").exists():
            raise _Fail(f"{model}: not a Hugging Face model directory (no config.json)")
    elif Path(model).exists() or model.startswith((".", "/", "~")) or model.count("/") != 1:
        raise _Fail(f"model not found: {model} (expected a local model directory or a hub id)")
    settings = GenerationSettings(model, n, max_new_tokens, SamplingSettings(temperature, top_k, top_p, seed), dtype)
    return settings, ModelEngineFactory(settings, engine, rows, check_every), _devices(gpus)


class _GenerationBar:
    """samples/s from tqdm itself, tokens/s in the postfix (the generator's Progress)."""

    def __init__(self, position: int = 0):
        self.bar, self.tokens, self.started, self.position = None, 0, 0.0, position

    def begin(self, samples: int) -> None:
        from tqdm import tqdm

        self.started = time.monotonic()
        if samples:
            self.bar = tqdm(total=samples, unit="sample", desc="generate", file=sys.stderr, smoothing=0.05, position=self.position, dynamic_ncols=True)

    def sample(self, n_tokens: int) -> None:
        self.tokens += n_tokens
        self.bar.update(1)
        text = f"{self.tokens / max(1e-9, time.monotonic() - self.started):,.0f} tok/s"
        gpu = _gpu_memory_peak_gib()
        if gpu:
            text += f", GPU peak {gpu:.1f} GiB"
        self.bar.set_postfix_str(text, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _gpu_memory_peak_gib() -> float:
    """Peak GPU memory of this process's CUDA devices (0 when it generates in worker processes)."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return 0.0
    return sum(torch.cuda.max_memory_allocated(i) for i in range(torch.cuda.device_count())) / 2**30


@main.command("generate")
@dataset_options
@generation_options
@click.option("--output", required=True, type=click.Path(path_type=Path), help="generations.json to write (journal: OUTPUT.journal/).")
def generate_command(dataset, split, difficulties, skills, indices, limit, model, n, temperature, top_p, top_k, max_new_tokens, seed, dtype, batch_size, gpus, engine, check_every, output):
    """Sample N programs per TACO problem with the official prompt; write the official generations.json."""

    from harness.data.prompts import build_prompt
    from harness.generation.generate import generate

    settings, factory, devices = generation_setup(model, n, temperature, top_p, top_k, max_new_tokens, seed, dtype, batch_size, gpus, engine, check_every)
    try:
        problems = load_problems(dataset, split, selection_from(difficulties, skills, indices, limit), require_tests=False)
        prompts = [(p.task_id, build_prompt(p.row)) for p in problems]
    except DatasetError as exc:
        raise _Fail(str(exc)) from exc
    except PromptError as exc:
        raise _Fail(f"{dataset}: {exc}") from exc
    output.parent.mkdir(parents=True, exist_ok=True)
    bar = _GenerationBar()
    try:
        summary = generate(prompts, settings, output, factory, devices, bar, _say)
    except (GenerationError, ModelError) as exc:
        raise _Fail(str(exc)) from exc
    finally:
        bar.close()
    rate = summary.new_tokens / summary.seconds if summary.seconds else 0.0
    click.echo(
        f"{summary.tasks} tasks x {n} samples ({summary.resumed} resumed, {summary.generated} generated: "
        f"{summary.new_tokens} tokens, {rate:,.0f} tok/s, {summary.seconds:.1f}s) -> {output}"
    )


@main.command("run")
@dataset_options
@generation_options
@evaluation_options
@click.option("--output", required=True, type=click.Path(path_type=Path), help="Directory for generations.json, results.json, metrics.json, run_stats.json, the report and both journals.")
@click.option("--restart", is_flag=True, help="Discard OUTPUT's journals (generation and evaluation) instead of resuming from them.")
def run_command(
    dataset, split, difficulties, skills, indices, limit, model, n, temperature, top_p, top_k, max_new_tokens, seed,
    dtype, batch_size, gpus, engine, check_every, workers, timeout, judge, all_tests, no_dedup, no_cache, memory_mb,
    sandbox, output, restart,
):
    """Generate N programs per problem and evaluate each one as soon as it is generated.

    Writes the official generations.json, results.json and metrics.json to OUTPUT, with
    run_stats.json (per-stage figures) and report.md/report.html.  Rerunning the same command
    resumes both stages from their journals.
    """
    import shutil

    from harness.pipeline import EVALUATION_JOURNAL, GENERATIONS_FILE, run_pipeline


    _check_output_directory(output)
    generation_settings, factory, devices = generation_setup(
        model, n, temperature, top_p, top_k, max_new_tokens, seed, dtype, batch_size, gpus, engine, check_every
    )
    evaluation_settings, choice = evaluation_setup(workers, timeout, judge, all_tests, no_dedup, memory_mb, sandbox)
    try:
        problems = load_problems(dataset, split, selection_from(difficulties, skills, indices, limit))
    except DatasetError as exc:
        raise _Fail(str(exc)) from exc
    if restart:
        shutil.rmtree(output / (GENERATIONS_FILE + ".journal"), ignore_errors=True)
        (output / EVALUATION_JOURNAL).unlink(missing_ok=True)
    total = len(problems) * n
    generation_bar = _GenerationBar(position=0)
    try:
        with _maybe_cache(not no_cache) as cache, _evaluation_bar(total, position=1) as on_progress:
            try:
                outcome = run_pipeline(
                    problems, generation_settings, evaluation_settings, output, factory, choice.opener(_say), devices,
                    cache, generation_bar, on_progress, _say,
                )
            finally:
                generation_bar.close()
    except (GenerationError, ModelError, SandboxUnavailable) as exc:
        raise _Fail(f"{exc} (finished samples and verdicts are kept in {output}; rerun to resume)") from exc
    except PromptError as exc:
        raise _Fail(f"{dataset}: {exc}") from exc
    except KeyboardInterrupt:
        raise _Fail(f"interrupted; rerun the same command to resume from the journals in {output}") from None
    evaluation, stats = outcome.evaluation, outcome.stats
    shown = {k: round(v, 4) for k, v in evaluation.metrics.items() if k.startswith("pass@")}
    click.echo(
        f"{shown}  {outcome.generation.tasks} tasks x {n} samples: generated {outcome.generation.generated} "
        f"({stats['generation']['tokens_per_s']:,.0f} tok/s), evaluated {evaluation.executed} distinct programs "
        f"({evaluation.from_cache} cached, {evaluation.from_journal} resumed); wall {stats['wall_seconds']:.1f}s, "
        f"generation {stats['generation']['seconds']:.1f}s, evaluation tail {stats['evaluation']['tail_after_generation_seconds']:.1f}s -> {output}"
    )
    _report_after_evaluate(output)
    _exit_on_infra_errors(evaluation.infra_errors)


if __name__ == "__main__":
    main()
