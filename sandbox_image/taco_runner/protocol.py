"""The wire protocol between the host and the runner: the one frame codec both ends use, and every
message, each a frozen dataclass with named fields.

Transport.  The host writes to the runner's stdin (fd 0) and reads its stdout (fd 1).  A message
is one *frame*: a 4-byte big-endian unsigned length, then that many bytes of UTF-8 JSON holding one
object.  The object's ``"kind"`` names the message; its other keys are the fields of the dataclass
of that kind, under the same names (tuples travel as arrays, enums as their values, an outcome as a
nested object with its own ``"kind"``; an optional field, one whose default is None, is left out
while it is None).  JSON is written ASCII-only, so strings holding lone surrogates (which test data
and programs do produce) survive the trip.

One job, as the two ends see it::

    host                                        runner
    Hello                           ->
                                    <-          Ready              (once, when a sandbox starts)
    RunStdinJob | RunCallJob        ->
                                    <-          Compiled           (TACO's compile step)
                                    <-          CaseFinished       (one per test run, as it ends; a
                                                                    few may travel in one write, at
                                                                    most 5 ms after the first of them)
    StopJob                         ->                             (optional: the verdict is settled)
                                    <-          JobDone            (always the last message of a job)

A frame the runner cannot read as a host message is answered with ``NotUnderstood``; a frame the
host cannot read as a runner message means the runner is broken (the host's ``SandboxError``).

Host -> runner
    Hello         the first message to a new runner.
    RunStdinJob   run a standard-input program on every input: TACO's compile step on
                  ``compile_program``, then pass 1 (``exec_program`` on each input, with TACO's
                  retries), and pass 2 (``second_program``) when every pass-1 test exited with 1.
    RunCallJob    compile ``program`` once and call ``fn_name`` with each of ``args`` (each the
                  ``valuecodec`` JSON of one test's arguments) in that one process, as TACO does.
    StopJob       skip the rest of job ``job_id`` (the host's early exit).

Runner -> host
    Ready         the answer to Hello: this protocol's version and the runner's Python.
    Compiled      the compile step's status (ok, error: TACO's -2, died: TACO's -1 for all), and
                  its timeout's figures when it ran past the deadline.
    CaseFinished  one test run: which pass, which test, its outcome, and how long it ran; with
                  the figures of a retry that ran past the deadline, if one did.
    JobDone       the job is over (``stopped`` early or not); a non-empty ``retire_reason`` asks
                  the host to replace this sandbox: a program left something it cannot clean.
    NotUnderstood a host frame that is not a host message, and why.

Outcomes (what one run of a program did; the host judges them: expected outputs never come here)
    Output          exited 0; ``text`` is its stdout, or output.txt (``from_output_file``)
    NonZeroExit     exited otherwise after every retry (TACO's ``returncode:N``), with stderr's tail
    RuntimeFailure  TACO's ``runtime_error``: input not encodable, output not valid UTF-8
    TimedOut        past the deadline (TACO's -1; a call's timeout), with the run's CPU time and its
                    waits for a CPU, so the host can tell a busy machine from a slow program
    OutputOverflow  more output (or a larger encoded return value) than the job allows
    CheckerDied     the call-based checker process died (TACO gives -1 for every test)
    ReturnValue     a call returned; ``encoded`` is the value's ``valuecodec`` form
    Raised          a call raised ``exception``
    Uncomparable    a call returned a value that cannot be encoded (``reason``)

Standard library only, Python 3.10+: this module runs in the sandbox as ``taco_runner.protocol``
and on the host as ``sandbox_image.taco_runner.protocol``.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable
from dataclasses import dataclass, fields
from enum import Enum
from typing import ClassVar, TypeAlias, TypeVar

# Changes whenever a message changes; the host refuses a runner that answers Hello with another.
PROTOCOL_VERSION = 3

FRAME_HEADER = struct.Struct(">I")


class ProtocolError(ValueError):
    """Bytes, or a JSON object, that are not a message of this protocol."""


# -- outcomes ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Output:
    KIND: ClassVar[str] = "output"
    text: str  # as ``subprocess.run(..., text=True)`` gives it (universal newlines)
    from_output_file: bool = False  # read from output.txt (TACO's last retry)


@dataclass(frozen=True)
class NonZeroExit:
    KIND: ClassVar[str] = "nonzero_exit"
    returncode: int  # of the last run that exited (negative: killed by that signal)
    stderr_tail: str  # the end of the first run's stderr, for humans


@dataclass(frozen=True)
class RuntimeFailure:
    KIND: ClassVar[str] = "runtime_failure"
    reason: str


@dataclass(frozen=True)
class TimedOut:
    """A run past its deadline, with where its time went (``cpuclock``), so that the host can tell a
    timeout of the program from one of a busy machine.  Times in ms over the run; None where the
    figure could not be read in that sandbox."""

    KIND: ClassVar[str] = "timeout"
    wall_ms: float = 0.0  # from the start of the run to the moment the figures were read
    cpu_ms: float | None = None  # on a CPU: every thread of every program process
    wait_ms: float | None = None  # runnable but waiting on a run queue (schedstat's run_delay)
    throttled_ms: float | None = None  # the sandbox cgroup throttled by its CPU quota
    runner_cpu_ms: float | None = None  # the runner's own CPU (it shares the sandbox's quota)


@dataclass(frozen=True)
class OutputOverflow:
    KIND: ClassVar[str] = "overflow"


@dataclass(frozen=True)
class CheckerDied:
    KIND: ClassVar[str] = "died"


@dataclass(frozen=True)
class ReturnValue:
    KIND: ClassVar[str] = "value"
    encoded: object  # valuecodec.encode's JSON form (decoded only on the host)


@dataclass(frozen=True)
class Raised:
    KIND: ClassVar[str] = "raised"
    exception: str  # "TypeName: message"


@dataclass(frozen=True)
class Uncomparable:
    KIND: ClassVar[str] = "uncomparable"
    reason: str


Outcome: TypeAlias = (
    Output | NonZeroExit | RuntimeFailure | TimedOut | OutputOverflow | CheckerDied | ReturnValue | Raised | Uncomparable
)


class CompileStatus(Enum):
    OK = "ok"
    ERROR = "error"  # the compile step failed or timed out (TACO's [-2])
    DIED = "died"  # the checker process died while compiling (TACO's [-1] * n)


# -- host -> runner ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Hello:
    KIND: ClassVar[str] = "hello"


@dataclass(frozen=True)
class RunStdinJob:
    KIND: ClassVar[str] = "run_stdin"
    job_id: int
    timeout_s: float  # per run of the program, wall clock
    output_limit_bytes: int
    compile_only: bool  # stop after Compiled
    fresh_interpreter: bool  # each run in a new `python` (the official procedure) instead of a fork
    compile_program: str
    exec_program: str
    second_program: str
    inputs: tuple[str, ...]


@dataclass(frozen=True)
class RunCallJob:
    KIND: ClassVar[str] = "run_call"
    job_id: int
    timeout_s: float  # per call (and for the compile step)
    output_limit_bytes: int  # of an encoded return value
    compile_only: bool
    program: str
    fn_name: str
    args: tuple[str, ...]  # one valuecodec JSON text per test


@dataclass(frozen=True)
class StopJob:
    KIND: ClassVar[str] = "stop"
    job_id: int


HostMessage: TypeAlias = Hello | RunStdinJob | RunCallJob | StopJob
RunJob: TypeAlias = RunStdinJob | RunCallJob


# -- runner -> host ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Ready:
    KIND: ClassVar[str] = "ready"
    protocol_version: int
    python_version: str


@dataclass(frozen=True)
class Compiled:
    KIND: ClassVar[str] = "compiled"
    job_id: int
    status: CompileStatus
    error: str  # why it failed; "" when it did not
    timed_out: TimedOut | None = None  # the compile step ran past its deadline (its figures)


@dataclass(frozen=True)
class CaseFinished:
    KIND: ClassVar[str] = "case_finished"
    job_id: int
    pass_number: int  # 1, or 2 for TACO's second pass of a stdin job
    case_index: int
    outcome: Outcome
    program_ms: float  # the test's runs, retries included
    # Another run of this test than the one its outcome reports ran past its deadline: a TACO retry
    # (the outcome is then a non-zero exit or output.txt) or a call-based checker's re-compile.
    retry_timeout: TimedOut | None = None


@dataclass(frozen=True)
class JobDone:
    KIND: ClassVar[str] = "job_done"
    job_id: int
    stopped: bool  # ended early at the host's StopJob
    retire_reason: str  # non-empty: replace this sandbox before its next job


@dataclass(frozen=True)
class NotUnderstood:
    KIND: ClassVar[str] = "not_understood"
    reason: str


RunnerMessage: TypeAlias = Ready | Compiled | CaseFinished | JobDone | NotUnderstood
Message: TypeAlias = HostMessage | RunnerMessage


# -- to and from JSON objects -----------------------------------------------------------------


_FIELDS: dict[type, tuple[tuple[str, bool], ...]] = {}  # per message class: (name, optional) of each field


def _wire_fields(item: Message | Outcome) -> tuple[tuple[str, bool], ...]:
    found = _FIELDS.get(type(item))
    if found is None:
        found = _FIELDS[type(item)] = tuple((field.name, field.default is None) for field in fields(item))
    return found


def to_wire(item: Message | Outcome) -> dict[str, object]:
    """*item* as the JSON object that carries it."""
    wire: dict[str, object] = {"kind": item.KIND}
    for name, optional in _wire_fields(item):
        value = getattr(item, name)
        if value is None and optional:
            continue  # an optional field (default None) travels only when set
        if isinstance(value, tuple):
            value = list(value)
        elif isinstance(value, Enum):
            value = value.value
        elif isinstance(value, Outcome):
            value = to_wire(value)
        wire[name] = value
    return wire


class _Fields:
    """The fields of one received object, each read as the type its message declares."""

    def __init__(self, wire: dict[str, object], kind: str) -> None:
        self._wire = wire
        self._kind = kind

    def _value(self, name: str) -> object:
        try:
            return self._wire[name]
        except KeyError:
            raise ProtocolError(f"{self._kind!r} message without {name!r}") from None

    def _wrong(self, name: str, wanted: str) -> ProtocolError:
        return ProtocolError(f"{self._kind!r} message: {name!r} is not {wanted}: {self._wire[name]!r:.100}")

    def text(self, name: str) -> str:
        value = self._value(name)
        if not isinstance(value, str):
            raise self._wrong(name, "a string")
        return value

    def integer(self, name: str) -> int:
        value = self._value(name)
        if not isinstance(value, int) or isinstance(value, bool):
            raise self._wrong(name, "an integer")
        return value

    def number(self, name: str) -> float:
        value = self._value(name)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise self._wrong(name, "a number")
        return float(value)

    def optional_number(self, name: str) -> float | None:
        return None if self._wire.get(name) is None else self.number(name)

    def optional_timeout(self, name: str) -> TimedOut | None:
        if self._wire.get(name) is None:
            return None
        outcome = self.outcome(name)
        if not isinstance(outcome, TimedOut):
            raise self._wrong(name, "a timeout")
        return outcome

    def flag(self, name: str) -> bool:
        value = self._value(name)
        if not isinstance(value, bool):
            raise self._wrong(name, "true or false")
        return value

    def texts(self, name: str) -> tuple[str, ...]:
        value = self._value(name)
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise self._wrong(name, "a list of strings")
        return tuple(value)

    def anything(self, name: str) -> object:
        return self._value(name)

    def compile_status(self, name: str) -> CompileStatus:
        try:
            return CompileStatus(self._value(name))
        except ValueError:
            raise self._wrong(name, "a compile status") from None

    def outcome(self, name: str) -> Outcome:
        value = self._value(name)
        if not isinstance(value, dict):
            raise self._wrong(name, "an outcome")
        return decode_outcome(value)


T = TypeVar("T")
_Decoders = dict[str, Callable[[_Fields], T]]

_OUTCOMES: _Decoders[Outcome] = {
    Output.KIND: lambda f: Output(f.text("text"), f.flag("from_output_file")),
    NonZeroExit.KIND: lambda f: NonZeroExit(f.integer("returncode"), f.text("stderr_tail")),
    RuntimeFailure.KIND: lambda f: RuntimeFailure(f.text("reason")),
    TimedOut.KIND: lambda f: TimedOut(
        wall_ms=f.number("wall_ms"),
        cpu_ms=f.optional_number("cpu_ms"),
        wait_ms=f.optional_number("wait_ms"),
        throttled_ms=f.optional_number("throttled_ms"),
        runner_cpu_ms=f.optional_number("runner_cpu_ms"),
    ),
    OutputOverflow.KIND: lambda f: OutputOverflow(),
    CheckerDied.KIND: lambda f: CheckerDied(),
    ReturnValue.KIND: lambda f: ReturnValue(f.anything("encoded")),
    Raised.KIND: lambda f: Raised(f.text("exception")),
    Uncomparable.KIND: lambda f: Uncomparable(f.text("reason")),
}

_HOST_MESSAGES: _Decoders[HostMessage] = {
    Hello.KIND: lambda f: Hello(),
    RunStdinJob.KIND: lambda f: RunStdinJob(
        job_id=f.integer("job_id"),
        timeout_s=f.number("timeout_s"),
        output_limit_bytes=f.integer("output_limit_bytes"),
        compile_only=f.flag("compile_only"),
        fresh_interpreter=f.flag("fresh_interpreter"),
        compile_program=f.text("compile_program"),
        exec_program=f.text("exec_program"),
        second_program=f.text("second_program"),
        inputs=f.texts("inputs"),
    ),
    RunCallJob.KIND: lambda f: RunCallJob(
        job_id=f.integer("job_id"),
        timeout_s=f.number("timeout_s"),
        output_limit_bytes=f.integer("output_limit_bytes"),
        compile_only=f.flag("compile_only"),
        program=f.text("program"),
        fn_name=f.text("fn_name"),
        args=f.texts("args"),
    ),
    StopJob.KIND: lambda f: StopJob(f.integer("job_id")),
}

_RUNNER_MESSAGES: _Decoders[RunnerMessage] = {
    Ready.KIND: lambda f: Ready(f.integer("protocol_version"), f.text("python_version")),
    Compiled.KIND: lambda f: Compiled(
        f.integer("job_id"), f.compile_status("status"), f.text("error"), f.optional_timeout("timed_out")
    ),
    CaseFinished.KIND: lambda f: CaseFinished(
        job_id=f.integer("job_id"),
        pass_number=f.integer("pass_number"),
        case_index=f.integer("case_index"),
        outcome=f.outcome("outcome"),
        program_ms=f.number("program_ms"),
        retry_timeout=f.optional_timeout("retry_timeout"),
    ),
    JobDone.KIND: lambda f: JobDone(f.integer("job_id"), f.flag("stopped"), f.text("retire_reason")),
    NotUnderstood.KIND: lambda f: NotUnderstood(f.text("reason")),
}


def _decode(wire: dict[str, object], decoders: _Decoders[T], family: str) -> T:
    kind = wire.get("kind")
    if not isinstance(kind, str) or kind not in decoders:
        raise ProtocolError(f"not a {family}: kind {kind!r:.100}")
    return decoders[kind](_Fields(wire, kind))


def decode_outcome(wire: dict[str, object]) -> Outcome:
    return _decode(wire, _OUTCOMES, "test outcome")


def decode_host_message(wire: dict[str, object]) -> HostMessage:
    return _decode(wire, _HOST_MESSAGES, "host message")


def decode_runner_message(wire: dict[str, object]) -> RunnerMessage:
    return _decode(wire, _RUNNER_MESSAGES, "runner message")


# -- frames -----------------------------------------------------------------------------------


def frame(payload: bytes) -> bytes:
    """*payload* with its length in front."""
    return FRAME_HEADER.pack(len(payload)) + payload


def encode_payload(item: Message | Outcome) -> bytes:
    """The JSON text of *item*, without the frame header."""
    if type(item) is CaseFinished and item.retry_timeout is None and type(item.outcome) is Output:
        return _output_case_payload(item, item.outcome)
    return json.dumps(to_wire(item), separators=(",", ":")).encode("utf-8")


# The message of nearly every test, one per test: written directly, the same text as the general way
# (fields in their order, ASCII-only JSON) at a third of its cost.
_OUTPUT_CASE = (
    '{"kind":"case_finished","job_id":%d,"pass_number":%d,"case_index":%d,'
    '"outcome":{"kind":"output","text":%s,"from_output_file":%s},"program_ms":%s}'
)


def _output_case_payload(case: CaseFinished, outcome: Output) -> bytes:
    ms, numbers = case.program_ms, (case.job_id, case.pass_number, case.case_index)
    if type(ms) is not float or not math.isfinite(ms) or any(type(n) is not int for n in numbers):
        return json.dumps(to_wire(case), separators=(",", ":")).encode("utf-8")  # not the usual kinds
    flag = "true" if outcome.from_output_file else "false"
    return (_OUTPUT_CASE % (*numbers, json.dumps(outcome.text), flag, repr(ms))).encode("utf-8")


def encode_frame(message: Message) -> bytes:
    return frame(encode_payload(message))


def return_value_payload(encoded_value: bytes) -> bytes:
    """``encode_payload(ReturnValue(value))`` for a value already serialised by valuecodec.dumps,
    spliced in as it is: a large return value is not parsed and serialised a second time."""
    return b'{"kind":"value","encoded":' + encoded_value + b"}"


class FrameDecoder:
    """Reassembles frames from a byte stream that arrives in pieces of any size (a frame may be
    torn anywhere, header included) and parses each into its JSON object.

    A frame whose length exceeds *max_payload*, or whose payload is not a JSON object, raises
    ProtocolError; the bad frame is consumed, except one refused for its announced length, which
    leaves the stream unusable (nothing says where the next frame starts)."""

    def __init__(self, max_payload: int | None = None) -> None:
        self._buffer = bytearray()
        self._max_payload = max_payload

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def next_payload(self) -> bytes | None:
        """The next complete frame's payload as it came, or None until one has fully arrived."""
        if len(self._buffer) < FRAME_HEADER.size:
            return None
        (size,) = FRAME_HEADER.unpack_from(self._buffer)
        if self._max_payload is not None and size > self._max_payload:
            raise ProtocolError(f"frame of {size} bytes announced, at most {self._max_payload} allowed")
        end = FRAME_HEADER.size + size
        if len(self._buffer) < end:
            return None
        payload = bytes(self._buffer[FRAME_HEADER.size : end])
        del self._buffer[:end]
        return payload

    def next_object(self) -> dict[str, object] | None:
        """The next complete frame's object, or None until one has fully arrived."""
        payload = self.next_payload()
        if payload is None:
            return None
        try:
            wire = json.loads(payload)
        except (ValueError, RecursionError, MemoryError) as exc:  # a hostile payload may nest deeply
            raise ProtocolError(f"frame is not JSON: {type(exc).__name__}: {exc}"[:300]) from None
        if not isinstance(wire, dict):
            raise ProtocolError(f"frame holds a {type(wire).__name__}, not an object")
        return wire
