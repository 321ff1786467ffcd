"""The checker process: a child (of the fork server) that holds one compiled program (TACO's compile step,
``compile_and_get_func``) and, for a call-based sample, answers one call per test, so that state
persists across a sample's tests as it does in TACO.

The child talks to the runner over two pipes, fd 3 (calls in) and fd 4 (replies out), in frames of
the protocol's codec:

* runner -> child, per call: the arguments' valuecodec JSON;
* child -> runner: first ``{"ok": true}`` or ``{"ok": false, "error": "..."}`` (the compile step),
  then per call one call outcome in the protocol's wire form (ReturnValue, Raised, Uncomparable or
  OutputOverflow).

The child is the program's own process, so a program can write to fd 4 itself: nothing the child
sends is trusted.  A reply that is too large, not a JSON object, not a call outcome, or that cannot
travel on to the host, counts as the checker dying (TACO's -1).
"""

from __future__ import annotations

import builtins
import json
import marshal
import os
import select
import shutil
import sys
import time
import types
from collections.abc import Callable, Sequence
from enum import Enum
from typing import Any, NoReturn, TypeVar, cast

from . import valuecodec
from .cpuclock import RunClock, process_clocks, program_pids
from .forkserver import ForkServer
from .hygiene import kill_program
from .interpreter import LazyNumpy, install_std_streams, precompiled_script
from .isolation import hard_exit, prepare_child, redirect_fds
from .protocol import (
    FRAME_HEADER,
    CheckerDied,
    FrameDecoder,
    Outcome,
    OutputOverflow,
    ProtocolError,
    Raised,
    ReturnValue,
    TimedOut,
    Uncomparable,
    decode_outcome,
    encode_payload,
    frame,
    return_value_payload,
    to_wire,
)
from .watched_run import READ_CHUNK

# Names pyext2's RuntimeModule leaves out when it turns exec'd globals into a module.
_MODULE_DUNDERS = frozenset(
    ["__name__", "__doc__", "__package__", "__loader__", "__spec__", "__file__", "__cached__", "__builtins__"]
)
CALL_FD, REPLY_FD = 3, 4  # in the child
T = TypeVar("T")


# -- the child ----------------------------------------------------------------------------------


def _exec_as_runtime_module(program: str) -> types.ModuleType:
    """pyext2 RuntimeModule.from_string: exec into a bare dict, expose the new names as a module."""
    namespace: dict[str, Any] = {}
    # Compiled without inheriting this module's ``from __future__ import annotations`` (exec of a
    # string would): pyext2's module has none, so TACO evaluates a program's annotations.
    exec(compile(program, "<string>", "exec", dont_inherit=True), namespace)
    module = types.ModuleType("tmp_sol", "")
    module.__dict__.update({k: v for k, v in namespace.items() if k not in _MODULE_DUNDERS})
    module.__file__ = "<runtime_module>"
    sys.modules["tmp_sol"] = module
    return module


def _reliability_guard() -> None:
    """TACO's reliability_guard (human-eval's), applied before call-based tests as TACO does."""
    builtins.exit = None  # type: ignore[assignment]
    builtins.quit = None  # type: ignore[assignment]
    os.environ["OMP_NUM_THREADS"] = "1"
    for name in (
        "kill", "system", "putenv", "remove", "removedirs", "rmdir", "fchdir", "setuid", "fork", "forkpty",
        "killpg", "rename", "renames", "truncate", "replace", "unlink", "fchmod", "fchown", "chmod", "chown",
        "chroot", "lchflags", "lchmod", "lchown", "getcwd", "chdir",
    ):  # fmt: skip
        setattr(os, name, None)
    shutil.rmtree = None  # type: ignore[assignment]
    shutil.move = None  # type: ignore[assignment]
    shutil.chown = None  # type: ignore[assignment]
    import subprocess

    subprocess.Popen = None  # type: ignore[assignment,misc]
    builtins.help = None  # type: ignore[assignment]
    for name in ("ipdb", "joblib", "resource", "psutil", "tkinter"):
        sys.modules[name] = None  # type: ignore[assignment]


def _send_frame(fd: int, payload: bytes) -> None:
    view = memoryview(frame(payload))
    while view:
        view = view[os.write(fd, view) :]


def _receive_frame(fd: int) -> bytes:
    """The next frame's payload; the child leaves quietly when the runner has closed the pipe."""
    header = b""
    while len(header) < FRAME_HEADER.size:
        chunk = os.read(fd, FRAME_HEADER.size - len(header))
        if not chunk:
            hard_exit(0)
        header += chunk
    (size,) = FRAME_HEADER.unpack(header)
    body = bytearray()
    while len(body) < size:
        chunk = os.read(fd, min(READ_CHUNK, size - len(body)))
        if not chunk:
            hard_exit(0)
        body += chunk
    return bytes(body)


def _compile_and_serve(program: str, call_based: bool, entry_point: str, output_limit: int) -> NoReturn:
    """Child body: TACO's compile step, then (call-based) answer calls until the runner stops us."""
    send = _send_frame
    exit_now = hard_exit
    try:
        module = _exec_as_runtime_module(program)
        target = module.Solution() if call_based and "class Solution" in program else module
        method = getattr(target, entry_point)
        ok = b'{"ok":true}'
    except Exception as exc:  # TACO: any Exception while compiling -> [-2]
        ok = json.dumps({"ok": False, "error": f"{type(exc).__name__}: {exc}"[:2000]}).encode()
        send(REPLY_FD, ok)
        exit_now(0)
    send(REPLY_FD, ok)
    if not call_based:
        exit_now(0)
    # TACO imported numpy (its header) before the guard disabled os functions numpy's import needs.
    numpy_stub = sys.modules.get("numpy")
    if isinstance(numpy_stub, LazyNumpy):
        try:
            numpy_stub.ndarray  # noqa: B018  # the first attribute loads the real numpy
        except Exception:
            pass
    _reliability_guard()
    loads, dumps, EncodeError = valuecodec.loads, valuecodec.dumps, valuecodec.EncodeError
    payload, value_payload = encode_payload, return_value_payload
    while True:
        args = loads(_receive_frame(CALL_FD))
        try:
            value = method(*args)
        except Exception as exc:
            send(REPLY_FD, payload(Raised(f"{type(exc).__name__}: {exc}"[:1000])))
            continue
        try:
            encoded = dumps(value)
        except EncodeError as exc:
            send(REPLY_FD, payload(Uncomparable(str(exc))))
            continue
        except Exception as exc:
            send(REPLY_FD, payload(Uncomparable(f"{type(exc).__name__}: {exc}"[:500])))
            continue
        if len(encoded) > output_limit:
            send(REPLY_FD, payload(OutputOverflow()))
            continue
        send(REPLY_FD, value_payload(encoded))


CheckerArguments = tuple[str, bool, str, str, int, "tuple[str, str] | None"]


def checker_child(fds: Sequence[int], flags: int, timeout: float, arguments: object) -> NoReturn:
    """The checker, as the fork server forks it (``forkserver.ChildBody``): *fds* are /dev/null (its
    0, 1 and 2), the calls' pipe (CALL_FD) and the replies' (REPLY_FD); *arguments* those of
    ``ServedProgram``.  Never returns."""
    try:
        program, call_based, entry_point, workdir, output_limit, precompile = cast(CheckerArguments, arguments)
        devnull, call_r, reply_w = fds
        prepare_child(workdir, 10**6)  # per-call CPU limit is set below, per call deadline by the runner
        redirect_fds((devnull, devnull, devnull, call_r, reply_w))
        install_std_streams()
        if precompile is not None:
            _send_frame(REPLY_FD, precompiled_script(*precompile))
        _compile_and_serve(program, call_based, entry_point, output_limit)
    finally:
        hard_exit(1)


# -- the runner's side --------------------------------------------------------------------------


class NoReply(Enum):
    TIMEOUT = "timeout"  # nothing within the deadline
    DIED = "died"  # the child ended, or sent something that is not a message


def call_outcome(reply: dict[str, object]) -> Outcome:
    """The outcome of one call, rebuilt from the child's reply with only known kinds, fields and
    sizes; anything else (the program wrote to the reply pipe itself) counts as the checker dying."""
    try:
        outcome = decode_outcome(reply)
    except ProtocolError:
        return CheckerDied()
    if isinstance(outcome, ReturnValue):
        try:
            json.dumps(to_wire(outcome))  # must survive the trip to the host
        except (ValueError, TypeError, RecursionError):
            return CheckerDied()
        return outcome
    if isinstance(outcome, Raised):
        return Raised(outcome.exception[:1000])
    if isinstance(outcome, Uncomparable):
        return Uncomparable(outcome.reason[:500])
    if isinstance(outcome, OutputOverflow):
        return outcome
    return CheckerDied()


class ServedProgram:
    """A child of the fork server holding one compiled program (TACO's checker process for one sample).

    When a reply does not come within its deadline, ``timed_out`` holds where the time of that step
    (the compile step, or the call) went, read before anything is killed."""

    def __init__(
        self,
        forks: ForkServer,
        program: str,
        call_based: bool,
        entry_point: str,
        workdir: str,
        timeout: float,
        output_limit: int,
        precompile: tuple[str, str] | None = None,
    ) -> None:
        """With *precompile* (a script's source and path), the child first compiles that script and
        sends it marshalled (``precompiled_script``), before it runs any of the program's code."""
        self.timeout = timeout
        self.timed_out: TimedOut | None = None
        self._forks = forks
        self._helpers = (forks.pid,)  # never counted in a timeout's figures
        call_r, self.call_w = os.pipe()
        self.reply_r, reply_w = os.pipe()
        devnull = os.open(os.devnull, os.O_RDWR)
        self._clock = RunClock.start()  # the compile step's: a forked child's counters start at 0
        arguments: CheckerArguments = (program, call_based, entry_point, workdir, output_limit, precompile)
        try:
            self.pid = forks.start_checker(arguments, (devnull, call_r, reply_w))
        finally:
            os.close(call_r)
            os.close(reply_w)
            os.close(devnull)
        # A reply is at most an encoded value of output_limit bytes and its envelope.
        self._replies = FrameDecoder(max_payload=output_limit + (1 << 16))

    def read_precompiled(self, timeout: float) -> types.CodeType | NoReply | None:
        """The script the child compiled ahead (its first reply, sent before any program code ran);
        None when it could not be compiled ahead."""
        reply = self._read(timeout, self._replies.next_payload)
        if isinstance(reply, NoReply):
            return reply
        # The compile step's figures, should it time out, start after the compile ahead.
        self._clock = RunClock.start(process_clocks(program_pids(self.pid, self._helpers)))
        try:
            code = marshal.loads(reply) if reply else None
        except (ValueError, EOFError, TypeError):
            return None
        return code if isinstance(code, types.CodeType) else None

    def read_reply(self, timeout: float) -> dict[str, object] | NoReply:
        """The child's next reply (a JSON object), or why there is none."""
        return self._read(timeout, self._replies.next_object)

    def _read(self, timeout: float, take: Callable[[], T | None]) -> T | NoReply:
        deadline = time.monotonic() + timeout
        while True:
            try:
                reply = take()
            except ProtocolError:
                return NoReply.DIED
            if reply is not None:
                return reply
            left = deadline - time.monotonic()
            if left <= 0:
                return self._time_out()
            ready, _, _ = select.select([self.reply_r], [], [], left)
            if not ready:
                return self._time_out()
            chunk = os.read(self.reply_r, READ_CHUNK)
            if not chunk:
                return NoReply.DIED
            self._replies.feed(chunk)

    def _time_out(self) -> NoReply:
        self.timed_out = self._clock.timed_out(self.pid, self._helpers)  # the child still runs: nothing killed it yet
        return NoReply.TIMEOUT

    def call(self, encoded_args: bytes) -> dict[str, object] | NoReply:
        # The call's figures are deltas from here (the checker has run the compile step and earlier calls).
        self._clock = RunClock.start(process_clocks(program_pids(self.pid, self._helpers)))
        try:
            _send_frame(self.call_w, encoded_args)
        except BrokenPipeError:
            return NoReply.DIED
        return self.read_reply(self.timeout)

    def close(self) -> None:
        for fd in (self.call_w, self.reply_r):
            try:
                os.close(fd)
            except OSError:
                pass
        kill_program(self.pid)
        self._forks.sweep()
