"""What produced a set of results, as one record (``Provenance``): the model and how it sampled, the
dataset (source, split, a digest of its content, the filters), the generations file (path, digest),
the evaluation settings, the harness (version, commit), the sandbox (image, Python), the host's
Python, and the date.  ``metrics.json`` and ``run_stats.json`` carry its ``record()`` under
``provenance``; the report shows it at its top.

It lives above both stages because it speaks of both: the flows (``harness.pipeline``) build it from
what they know, each part with a ``describe_*`` function of this module.  What is not known is
written as "not recorded", never guessed: ``harness evaluate`` knows the model only when the
generations file came from ``harness generate`` or ``run`` (the journal's ``settings.json`` beside
it, or the ``metrics.json``/``run_stats.json`` of the run directory that wrote that very file).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import platform
import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness.data.atomic import write_json_atomic
from harness.data.problems import Problem, Selection
from harness.evaluation.cache import default_cache_dir
from harness.evaluation.plan import EvaluationSettings
from harness.generation.plan import GenerationSettings

NOT_RECORDED = "not recorded"
_CHUNK = 1 << 20
# The sandbox image's Python, by image id (content-addressed, so an entry never goes stale).
_SANDBOX_PYTHON_FILE = "sandbox-python.json"
_VERSION_PROBE = "import sys; print(sys.version.split()[0])"
_VERSION = re.compile(r"\d+\.\d+(\.\d+)?\S*")


@dataclass(frozen=True)
class DatasetRecord:
    source: str  # a hub id as given, or the absolute path of the file or directory
    split: str
    rows: int  # rows of the split, before any filter
    digest: str  # "sha256:<hex>"
    digest_of: str  # what was hashed: "file bytes" (a one-file dataset) or "selected rows" (canonical JSON)
    selection: Selection

    def record(self) -> dict:
        return {
            "source": self.source,
            "split": self.split,
            "rows": self.rows,
            "digest": self.digest,
            "digest_of": self.digest_of,
            "filters": selection_record(self.selection),
        }


@dataclass(frozen=True)
class GenerationsFile:
    path: str  # absolute
    digest: str  # "sha256:<hex>" of the file's bytes
    tasks: int
    samples_per_task: tuple[int, int]  # (fewest, most)

    def record(self) -> dict:
        fewest, most = self.samples_per_task
        return {
            "path": self.path,
            "digest": self.digest,
            "tasks": self.tasks,
            "samples_per_task": fewest if fewest == most else f"{fewest}-{most}",
        }


@dataclass(frozen=True)
class GenerationRecord:
    """How the samples were generated: the model, n, and the rest of the generation settings as the
    generation journal records them (``GenerationSettings.fingerprint()``: sampling, max tokens, dtype...)."""

    model: str
    n: int | None  # samples per task (None: not recorded, and the file's tasks differ)
    settings: Mapping[str, Any]
    source: str  # where these were found: "harness run", or the file they were read from

    def record(self) -> dict:
        others = {k: v for k, v in self.settings.items() if k not in ("model", "n", "from")}
        return {"n": self.n, **others, "from": self.source}


@dataclass(frozen=True)
class HarnessRecord:
    version: str
    commit: str | None  # the git commit of a checkout; None when installed from a package
    modified: bool | None  # tracked files differ from that commit

    def record(self) -> dict:
        return {"version": self.version, "commit": self.commit, "modified": self.modified}


@dataclass(frozen=True)
class SandboxRecord:
    kind: str  # "docker", "namespace", or NOT_RECORDED
    identity: str  # EvaluationSettings.sandbox_id: what verdicts depend on besides program and tests
    image: str | None  # docker: the image tag
    image_id: str | None  # docker: its content id
    python: str  # the Python version programs ran under, or "not recorded (why)"

    def record(self) -> dict:
        return {"kind": self.kind, "image": self.image, "image_id": self.image_id, "identity": self.identity}


@dataclass(frozen=True)
class Provenance:
    command: str  # "evaluate" or "run"
    date: str  # when the results were written: UTC, ISO 8601
    generation: GenerationRecord | None  # None: not recorded
    dataset: DatasetRecord | None  # None: problems given in memory
    generations: GenerationsFile | None  # None: samples given in memory
    evaluation: EvaluationSettings
    harness: HarnessRecord
    sandbox: SandboxRecord
    host_python: str

    @property
    def model(self) -> str:
        return self.generation.model if self.generation is not None else NOT_RECORDED

    def record(self) -> dict:
        """The ``provenance`` block of metrics.json and run_stats.json (plain JSON)."""
        return {
            "command": self.command,
            "date": self.date,
            "model": self.model,
            "generation": self.generation.record() if self.generation is not None else NOT_RECORDED,
            "dataset": self.dataset.record() if self.dataset is not None else NOT_RECORDED,
            "generations": self.generations.record() if self.generations is not None else NOT_RECORDED,
            "evaluation": self.evaluation.record(),
            "harness": self.harness.record(),
            "sandbox": self.sandbox.record(),
            "python": {"host": self.host_python, "sandbox": self.sandbox.python},
        }


def build_provenance(
    command: str,
    evaluation: EvaluationSettings,
    *,
    generation: GenerationRecord | None = None,
    dataset: DatasetRecord | None = None,
    generations: GenerationsFile | None = None,
) -> Provenance:
    """The record of a run that has just finished, with this machine's facts filled in."""
    return Provenance(
        command=command,
        date=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        generation=generation,
        dataset=dataset,
        generations=generations,
        evaluation=evaluation,
        harness=describe_harness(),
        sandbox=describe_sandbox(evaluation.sandbox_id),
        host_python=platform.python_version(),
    )


# -- the dataset and the generations file -----------------------------------------------------------
def selection_record(selection: Selection) -> dict:
    return {
        "difficulties": list(selection.difficulties),
        "skills": list(selection.skills),
        "indices": None if selection.indices is None else list(selection.indices),
        "limit": selection.limit,
    }


def describe_dataset(
    source: str | Path, split: str, selection: Selection, selected: Sequence[Problem], split_rows: int
) -> DatasetRecord:
    """*source*, of whose split (*split_rows* rows) *selection* kept *selected*.  A one-file dataset
    is digested by its bytes (``sha256sum`` gives the same); a directory or hub id by the selected
    problems as read (task id and row, as canonical JSON, a line each), since other splits and files
    may sit beside them."""
    path = Path(source)
    if path.is_file():
        return DatasetRecord(str(path.resolve()), split, split_rows, file_digest(path), "file bytes", selection)
    digest = hashlib.sha256()
    for problem in selected:
        line = json.dumps([problem.task_id, problem.row], sort_keys=True, ensure_ascii=False, default=str) + "\n"
        digest.update(line.encode("utf-8", "surrogatepass"))
    shown = str(path.resolve()) if path.exists() else str(source)
    return DatasetRecord(shown, split, split_rows, f"sha256:{digest.hexdigest()}", "selected rows", selection)


def describe_generations(path: Path, samples_per_task: Sequence[int]) -> GenerationsFile:
    """The generations file at *path*, holding *samples_per_task* samples for each of its tasks."""
    counts = list(samples_per_task) or [0]
    return GenerationsFile(str(path.resolve()), file_digest(path), len(samples_per_task), (min(counts), max(counts)))


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"


# -- how the samples were generated ------------------------------------------------------------------
def generation_of_run(settings: GenerationSettings) -> GenerationRecord:
    """The settings ``harness run`` generated with."""
    recorded = settings.fingerprint()
    return GenerationRecord(str(recorded.get("model", settings.model)), settings.n, recorded, "harness run")


def generation_beside(generations: GenerationsFile) -> GenerationRecord | None:
    """The settings the generations file was generated with, when ``harness generate`` or ``run``
    wrote it: its journal's ``settings.json`` beside it, or else a ``metrics.json``/``run_stats.json``
    beside it whose provenance names a generations file of the same digest.  None when neither."""
    path = Path(generations.path)
    uniform_n = generations.samples_per_task[0] if len(set(generations.samples_per_task)) == 1 else None
    # The journal's place is generation.journal's: FILE.journal/settings.json.
    journal_settings = path.with_name(path.name + ".journal") / "settings.json"
    found = _json_object(journal_settings)
    if found is not None and isinstance(found.get("model"), str):
        # n: the samples per task of the file (the journal may hold more, and newer ones do not record n).
        n = found.get("n")
        return GenerationRecord(found["model"], uniform_n or (n if isinstance(n, int) else None), found, str(journal_settings))
    for name in ("metrics.json", "run_stats.json"):
        provenance = (_json_object(path.parent / name) or {}).get("provenance")
        if not isinstance(provenance, Mapping):
            continue
        written, generation = provenance.get("generations"), provenance.get("generation")
        model = provenance.get("model")
        if (
            isinstance(written, Mapping)
            and written.get("digest") == generations.digest
            and isinstance(generation, Mapping)
            and isinstance(model, str)
            and model != NOT_RECORDED
        ):
            n = generation.get("n")
            return GenerationRecord(model, n if isinstance(n, int) else uniform_n, dict(generation), str(path.parent / name))
    return None


def _json_object(path: Path) -> dict | None:
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


# -- this machine -------------------------------------------------------------------------------------
def describe_harness() -> HarnessRecord:
    root = Path(__file__).resolve().parents[2]
    try:
        version = importlib.metadata.version("taco-harness")
    except importlib.metadata.PackageNotFoundError:  # a checkout on sys.path, not installed: its pyproject.toml
        try:
            found = re.search(r'^version = "([^"]+)"', (root / "pyproject.toml").read_text(encoding="utf-8"), re.MULTILINE)
        except OSError:
            found = None
        version = found.group(1) if found else NOT_RECORDED
    if not (root / ".git").exists():
        return HarnessRecord(version, None, None)
    commit = _git(root, "rev-parse", "HEAD")
    # --no-optional-locks: reading the state must not take the index lock from someone working there.
    status = _git(root, "--no-optional-locks", "status", "--porcelain", "--untracked-files=no")
    return HarnessRecord(version, commit or None, None if status is None else bool(status))


def _git(root: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def describe_sandbox(identity: str) -> SandboxRecord:
    """The sandbox behind ``EvaluationSettings.sandbox_id``: a namespace identity names its Python; a
    Docker one names the image, whose Python is asked once per image (and remembered by image id)."""
    first = identity.split()[0] if identity.strip() else ""
    if first.startswith("namespace-"):
        found = re.search(r"(?:^|\s)python(\d\S*)", identity)
        return SandboxRecord("namespace", identity, None, None, found.group(1) if found else NOT_RECORDED)
    if ":" in first:
        image_id, python = _docker_image_python(first)
        return SandboxRecord("docker", identity, first, image_id, python)
    return SandboxRecord(NOT_RECORDED, identity or NOT_RECORDED, None, None, NOT_RECORDED)


def _docker_image_python(image: str) -> tuple[str | None, str]:
    """(image id, Python version) of a sandbox image; never raises: what cannot be found is noted."""
    try:
        import docker.errors

        from harness.sandbox.docker.backend import LABEL, connect
    except ImportError:
        return None, f"{NOT_RECORDED} (no Docker SDK)"
    try:
        client = connect()
        image_id = str(client.images.get(image).id)
    except docker.errors.ImageNotFound:
        return None, f"{NOT_RECORDED} (the image is not on this Docker host)"
    except Exception as exc:  # no daemon, or any error of the SDK: a note, never a failed run
        return None, f"{NOT_RECORDED} ({type(exc).__name__})"
    remembered_file = default_cache_dir() / _SANDBOX_PYTHON_FILE
    remembered = _json_object(remembered_file) or {}
    if isinstance(remembered.get(image_id), str):
        return image_id, remembered[image_id]
    try:
        # The image's own interpreter, as the runner starts it, in a container as locked down as a sandbox.
        printed = client.containers.run(
            image_id,
            ["python3", "-c", _VERSION_PROBE],
            remove=True,
            network_disabled=True,
            network_mode="none",
            read_only=True,
            user="65534:65534",
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            mem_limit="256m",
            pids_limit=16,
            labels={LABEL: "1"},
        )
    except Exception as exc:  # see above
        return image_id, f"{NOT_RECORDED} ({type(exc).__name__})"
    version = (printed.decode("utf-8", "replace") if isinstance(printed, bytes) else str(printed)).strip()
    if not _VERSION.fullmatch(version):
        return image_id, f"{NOT_RECORDED} (unexpected answer {version[:40]!r})"
    try:
        remembered_file.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(remembered_file, {**remembered, image_id: version})
    except OSError:
        pass  # remembering is an optimisation
    return image_id, version
