"""The in-container test runner: one long-lived process per sandbox container (its PID 1).

It reads jobs from the host as framed JSON messages on stdin and answers on stdout, one message per
finished test, so the host can judge while later tests still run.  Design points:

* Warm interpreter: the TACO header modules (numpy included) are imported once at start; every
  program run is a ``fork`` of this process, never a fresh ``python``.
* No signal handlers anywhere: the runner waits for each child with a deadline (select on pipes and
  a pidfd) and kills its process group when the deadline passes; RLIMIT_CPU is the second line.
  As PID 1 with default dispositions, the runner cannot be signalled by the programs it runs.
* Expected outputs never come here.  The runner reports what a program did (its stdout, exit
  status, timeout, or a call's encoded return value) and the host judges.
* After every run all other processes in the container are killed (``kill(-1)``) and reaped, and the
  scratch directory is wiped, so nothing outlives its test.

The stdin procedure reproduces TACO HEAD's ``execute_std_code`` (run on a pipe; on a non-zero exit
retry with stdin from a file, then with ``input.txt``/``output.txt``); the call-based procedure keeps
one process per sample so state persists across tests, as in TACO.

Standard library only (plus the numpy the TACO header imports).
"""

import atexit
import builtins
import codecs
import gc
import io
import json
import os
import resource
import select
import shutil
import signal
import stat
import struct
import sys
import time
import traceback
import types

import valuecodec

RUNNER_VERSION = "1"

# TACO's header, imported once here so every forked program finds it warm.  numpy is the exception:
# importing it eagerly would double the cost of every fork (its heap must be copied and torn down),
# so it is registered lazily and loads on first use, inside the program that uses it, as the fresh
# interpreter of the official harness would.
WARM_IMPORTS = (
    "import sys\nimport time\nimport itertools\nfrom itertools import accumulate, product, permutations, combinations\n"
    "import collections\nfrom collections import Counter, OrderedDict, deque, defaultdict, ChainMap\n"
    "from functools import lru_cache\nimport math\nfrom math import sqrt, sin, cos, tan, ceil, fabs, floor, gcd, exp, log, log2\n"
    "import fractions\nfrom typing import List, Tuple\nimport random\nimport heapq\nfrom heapq import *\n"
)


class _LazyNumpy(types.ModuleType):
    """Stands in for numpy until a program first touches an attribute, then becomes it.

    importlib.util.LazyLoader is not usable here: the import statement itself reads ``__spec__``,
    which would load numpy in every program.  This stub carries the real spec, so ``import numpy as
    np`` is free; the first missing attribute imports the real numpy and copies its namespace in.
    """

    def __getattr__(self, name):
        if sys.modules.get("numpy") is self:
            del sys.modules["numpy"]
        import importlib

        real = importlib.import_module("numpy")
        self.__dict__.update(real.__dict__)
        return getattr(real, name)


def register_lazy_numpy():
    import importlib.util

    spec = importlib.util.find_spec("numpy")
    if spec is None:
        return
    stub = _LazyNumpy("numpy")
    stub.__spec__ = spec
    stub.__file__ = spec.origin
    stub.__loader__ = spec.loader
    stub.__package__ = "numpy"
    sys.modules["numpy"] = stub


SCRATCH = os.environ.get("TACO_RUNNER_SCRATCH", "/tmp")
# The runner's own corner of the scratch space (the stdin feed of retry A): programs cannot touch it
# when they run under another uid.
PRIVATE = os.path.join(SCRATCH, ".runner")
# Scratch places besides SCRATCH that a program can write and that outlive it; wiped after every run.
SHARED_SCRATCH = ("/dev/shm", "/dev/mqueue")
# Privilege separation: started as root (with only the capabilities it needs: SETUID, SETGID, KILL,
# DAC_OVERRIDE, FOWNER), the runner drops every program to this uid/gid, so a program can neither
# signal, ptrace, prlimit nor open /proc/1/* of the runner.  Started as any other user it runs
# programs as itself (and is then only as safe as PR_SET_DUMPABLE makes it).
PROGRAM_UID = int(os.environ.get("TACO_RUNNER_PROGRAM_UID", "65534"))
PROGRAM_GID = int(os.environ.get("TACO_RUNNER_PROGRAM_GID", "65534"))
SEPARATED = os.getuid() == 0
STDERR_KEEP = 4096  # bytes of a program's stderr kept for diagnostics
READ_CHUNK = 1 << 16
# Extra wall time allowed after the deadline for a killed process group to disappear.
KILL_GRACE_S = 2.0
# Names pyext2's RuntimeModule leaves out when it turns exec'd globals into a module.
_MODULE_DUNDERS = frozenset(
    ["__name__", "__doc__", "__package__", "__loader__", "__spec__", "__file__", "__cached__", "__builtins__"]
)


# --------------------------------------------------------------------------------------------
# framing: 4-byte big-endian length + UTF-8 JSON


class Channel:
    """Framed messages over a pair of file descriptors."""

    def __init__(self, rfd, wfd):
        self.rfd = rfd
        self.wfd = wfd
        self.buf = bytearray()

    def send(self, message):
        payload = json.dumps(message, separators=(",", ":")).encode("utf-8")
        data = struct.pack(">I", len(payload)) + payload
        view = memoryview(data)
        while view:
            n = os.write(self.wfd, view)
            view = view[n:]

    def _frame(self):
        if len(self.buf) < 4:
            return None
        (size,) = struct.unpack(">I", self.buf[:4])
        if len(self.buf) < 4 + size:
            return None
        payload = bytes(self.buf[4 : 4 + size])
        del self.buf[: 4 + size]
        return json.loads(payload)

    def recv(self, timeout=None):
        """Next message; None at EOF or when *timeout* (seconds) passes first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            message = self._frame()
            if message is not None:
                return message
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([self.rfd], [], [], left)[0]:
                    return None
            chunk = os.read(self.rfd, READ_CHUNK)
            if not chunk:
                return None
            self.buf += chunk

    def poll(self):
        """A message if one is already available, else None (never blocks)."""
        message = self._frame()
        if message is not None:
            return message
        while select.select([self.rfd], [], [], 0)[0]:
            chunk = os.read(self.rfd, READ_CHUNK)
            if not chunk:
                return None
            self.buf += chunk
            message = self._frame()
            if message is not None:
                return message
        return None


# --------------------------------------------------------------------------------------------
# process hygiene


def sweep_processes():
    """Kill every other process in the container and reap them all (as PID 1, orphans are ours).

    kill(-1) reaches every process we may signal except ourselves; that is the whole container only
    when we are its PID 1, so outside a container (tests of the runner itself) it is not used.
    """
    if os.getpid() == 1:
        try:
            os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:
            pass
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return
        except InterruptedError:
            continue


def kill_tree(pid):
    """Kill a program and everything it started: the whole container when we are its PID 1,
    else the program's process group."""
    try:
        if os.getpid() == 1:
            os.kill(-1, signal.SIGKILL)
        else:
            os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:  # the program may not have made its group yet
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _make_writable(function, path, _exc_info):
    """rmtree's error hook: a program may leave directories it made unreadable (mode 000)."""
    try:
        os.chmod(os.path.dirname(path), 0o700)
        os.chmod(path, 0o700)
    except OSError:
        pass
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.unlink(path)
    except OSError:
        pass


def remove_path(full):
    try:
        if os.path.isdir(full) and not os.path.islink(full):
            shutil.rmtree(full, onerror=_make_writable)
        else:
            os.unlink(full)
    except OSError:
        pass


def wipe_dir(path, keep=()):
    """Remove everything below *path* (files a program left behind), keeping *path* itself."""
    try:
        entries = os.listdir(path)
    except FileNotFoundError:
        os.makedirs(path, exist_ok=True)
        return
    except OSError:
        return
    for name in entries:
        full = os.path.join(path, name)
        if full not in keep:
            remove_path(full)


def _own_dir(path, mode):
    """*path* as a real directory of ours with *mode* (recreated if a program replaced it)."""
    try:
        info = os.lstat(path)
        if stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid():
            if stat.S_IMODE(info.st_mode) != mode:
                os.chmod(path, mode)
            return
        remove_path(path)
    except FileNotFoundError:
        pass
    os.mkdir(path)
    os.chmod(path, mode)


def clean_scratch(workdir):
    """Everything a program can write is reset: all of SCRATCH (not just its working directory),
    /dev/shm and the POSIX message queues."""
    in_container = os.getpid() == 1  # elsewhere (tests of the runner itself) only the work dir is ours
    if in_container:
        wipe_dir(SCRATCH, keep=(workdir, PRIVATE))
    _own_dir(workdir, 0o777 if SEPARATED else 0o755)
    wipe_dir(workdir)
    if SEPARATED:
        _own_dir(PRIVATE, 0o700)
    for path in SHARED_SCRATCH if in_container else ():
        if os.path.isdir(path) and os.access(path, os.W_OK):
            wipe_dir(path)


def leftovers():
    """What a program left that the runner could not remove (reasons to retire this sandbox)."""
    found = []
    me = str(os.getpid())
    try:
        others = [p for p in os.listdir("/proc") if p.isdigit() and p != me]
    except OSError:
        others = []
    if os.getpid() == 1 and others:
        found.append(f"processes {others[:5]}")
    for kind in ("shm", "msg", "sem"):  # SysV IPC objects outlive processes; only CAP_SYS_ADMIN removes others'
        try:
            with open(f"/proc/sysvipc/{kind}") as f:
                if len(f.read().splitlines()) > 1:
                    found.append(f"sysv {kind}")
        except OSError:
            pass
    for path in (SCRATCH,) + SHARED_SCRATCH:
        try:
            names = set(os.listdir(path)) - {"work", ".runner"}
        except OSError:
            continue
        if names:
            found.append(f"files in {path}")
    if _rlimits() != _RLIMITS_AT_START:
        found.append("runner limits changed")
    return found


def _rlimits():
    return [resource.getrlimit(getattr(resource, name)) for name in dir(resource) if name.startswith("RLIMIT_")]


_RLIMITS_AT_START = None


def _can_drop_privileges():
    """Whether a forked child can become the program user (checked once, before serving)."""
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([])
            os.setresgid(PROGRAM_GID, PROGRAM_GID, PROGRAM_GID)
            os.setresuid(PROGRAM_UID, PROGRAM_UID, PROGRAM_UID)
            _exit(0 if os.getresuid() == (PROGRAM_UID,) * 3 else 1)
        finally:
            _exit(1)
    _, status = os.waitpid(pid, 0)
    return status == 0


def _prctl(option, value):
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(option, value, 0, 0, 0) == 0
    except Exception:
        return False


PR_SET_DUMPABLE = 4
# Bound once: a program may replace os._exit in its own process; its forked child must still leave
# through here, never fall back into the runner's code.
_exit = os._exit


def _write_private_file(path, data, mode=0o600):
    """Create *path* afresh with *data*: whatever a program put there (a FIFO, a symlink) is removed
    first, and the open neither follows links nor blocks."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except IsADirectoryError:
        remove_path(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_NONBLOCK, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)
    os.chmod(path, mode)


def _read_program_file(path, limit):
    """Read a file the program wrote (output.txt) as the program could: a regular file, not through
    a symlink, readable by the program's uid, without blocking; at most *limit* + 1 bytes."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(f"{path} is not a regular file")
        if SEPARATED:
            bit = stat.S_IRUSR if info.st_uid == PROGRAM_UID else stat.S_IROTH
            if not info.st_mode & bit:
                raise PermissionError(f"{path} is not readable by the program")
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, min(READ_CHUNK * 16, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------------------------
# the forked program: behave like `python script.py` run fresh


def _std_stream(fd, name, mode, errors, line_buffering):
    # Built the way CPython's create_stdio builds them, down to the attributes programs read
    # (fast-I/O templates test ``"r" in file.mode``; some print ``sys.stdout.buffer.name``).
    raw = io.FileIO(fd, mode + "b", closefd=False)
    raw.name = name
    buffered = io.BufferedReader(raw) if mode == "r" else io.BufferedWriter(raw)
    text = io.TextIOWrapper(buffered, encoding="utf-8", errors=errors, newline="\n", line_buffering=line_buffering)
    text.mode = mode
    return text


def _std_streams():
    """Fresh sys.stdin/stdout/stderr over fds 0-2, configured like a new interpreter's."""
    stdin = _std_stream(0, "<stdin>", "r", "strict", False)
    stdout = _std_stream(1, "<stdout>", "w", "strict", False)
    stderr = _std_stream(2, "<stderr>", "w", "backslashreplace", True)
    sys.stdin, sys.stdout, sys.stderr = stdin, stdout, stderr
    sys.__stdin__, sys.__stdout__, sys.__stderr__ = stdin, stdout, stderr


def _exit_status(code):
    """The process exit status `python` gives for ``SystemExit(code)``."""
    if code is None:
        return 0
    if isinstance(code, int):
        return int(code) & 0xFF
    try:
        sys.stderr.write(str(code) + "\n")
    except BaseException:
        pass
    return 1


def _finish_like_interpreter(status, BaseException=BaseException, getattr=getattr, atexit=atexit, sys=sys):
    """Interpreter shutdown as CPython does it: threads, atexit, flush; then leave.  (Names are
    bound at definition: the program may have emptied builtins, as CPython's own C shutdown ignores.)"""
    threading = sys.modules.get("threading")
    if threading is not None:  # only a program that imported threading can have threads to wait for
        try:
            threading._shutdown()
        except BaseException:
            pass
    try:
        atexit._run_exitfuncs()
    except BaseException:
        pass
    for stream, failing_status in ((sys.stdout, 120), (sys.stderr, None)):
        try:  # CPython skips closed streams; failing to flush stdout turns the status into 120
            if stream is not None and not getattr(stream, "closed", False):
                stream.flush()
        except BaseException:
            if failing_status is not None:
                status = failing_status
    _exit(status)


def run_program_child(source, workdir, path):
    """Body of a forked child that runs *source* as a fresh ``__main__`` script.  Never returns."""
    status = 1
    try:
        _std_streams()
        sys.argv = [path]
        sys.path[0] = workdir
        main = types.ModuleType("__main__")
        main.__file__ = path
        main.__builtins__ = builtins
        sys.modules["__main__"] = main
        try:
            code = compile(source, path, "exec")
            exec(code, main.__dict__)
            status = 0
        except SystemExit as exc:
            status = _exit_status(exc.code)
        except KeyboardInterrupt:
            traceback.print_exc()
            sys.stderr.flush()
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGINT)
        except BaseException:
            traceback.print_exc()
            status = 1
    except BaseException:
        status = 1
    _finish_like_interpreter(status)


def _prepare_child(workdir, cpu_seconds):
    """Common set-up right after fork, before any untrusted code runs."""
    if os.getpid() != 1 and os.getppid() != 1:
        # Outside a container (runner tests) the process group is what gets killed.  Inside, the
        # runner is PID 1 and kill(-1) sweeps everything, so the program stays in PID 1's group and
        # os.setsid() works for it as it does for a program started from a shell.
        os.setpgid(0, 0)
    soft = max(1, int(cpu_seconds) + 1)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, soft + 1))
    if SEPARATED:
        os.setgroups([])
        os.setresgid(PROGRAM_GID, PROGRAM_GID, PROGRAM_GID)
        os.setresuid(PROGRAM_UID, PROGRAM_UID, PROGRAM_UID)  # drops every capability
    # The runner is not dumpable (its /proc entries are closed to programs); a program is, as usual.
    _prctl(PR_SET_DUMPABLE, 1)
    try:  # under memory pressure the kernel kills the program, never the runner
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("1000")
    except OSError:
        pass
    os.chdir(workdir)


def _redirect(fd_in, fd_out, fd_err):
    os.dup2(fd_in, 0)
    os.dup2(fd_out, 1)
    os.dup2(fd_err, 2)
    os.closerange(3, 65536)


# --------------------------------------------------------------------------------------------
# one run of a stdin program, watched from outside


class RunResult:
    __slots__ = ("status", "returncode", "stdout", "stdout_ok", "stderr_ok", "stderr_tail", "seconds")

    def __init__(self):
        self.status = "exit"  # exit | timeout | overflow
        self.returncode = None
        self.stdout = b""
        self.stdout_ok = True  # stdout is valid UTF-8
        self.stderr_ok = True  # stderr is valid UTF-8
        self.stderr_tail = b""
        self.seconds = 0.0


def run_stdin_program(source, workdir, stdin_data, stdin_path, capture, timeout, output_limit, fresh=False):
    """Fork and run *source* like ``subprocess.run(['python', path], ..., timeout=timeout)``.

    stdin comes from the bytes *stdin_data* on a pipe, or from the file *stdin_path*, or /dev/null.
    With *capture* stdout/stderr are read (and UTF-8 checked, as ``text=True`` would decode them);
    without, they go to /dev/null.  Finished means: the child exited and both pipes reached EOF,
    like ``communicate``.  Past the deadline the whole process group is killed.
    """
    result = RunResult()
    path = os.path.join(workdir, "solution.py")
    devnull = os.open(os.devnull, os.O_RDWR)
    in_r = in_w = out_r = out_w = err_r = err_w = None
    if stdin_data is not None:
        in_r, in_w = os.pipe()
        child_in = in_r
    elif stdin_path is not None:
        child_in = os.open(stdin_path, os.O_RDONLY)
    else:
        child_in = devnull
    if capture:
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        child_out, child_err = out_w, err_w
    else:
        child_out = child_err = devnull
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        try:
            _prepare_child(workdir, timeout)
            _redirect(child_in, child_out, child_err)
        except BaseException:
            _exit(126)
        try:  # the script exists on disk, as the official one does (``open(__file__)`` works)
            with open(path, "w", encoding="utf-8", errors="surrogatepass") as f:
                f.write(source)
            if fresh:
                # The official procedure, for benchmarks and fidelity checks: a new interpreter per run.
                os.execv(sys.executable, [sys.executable, path])
        except BaseException:
            _exit(126)
        try:
            run_program_child(source, workdir, path)
        finally:
            _exit(1)  # reached only if the program broke the normal way out
    for fd in (in_r, out_w, err_w):
        if fd is not None:
            os.close(fd)
    if stdin_path is not None:
        os.close(child_in)
    os.close(devnull)

    pidfd = os.pidfd_open(pid)
    deadline = start + timeout
    readers = {}
    if capture:
        readers[out_r] = "out"
        readers[err_r] = "err"
        os.set_blocking(out_r, False)
        os.set_blocking(err_r, False)
    writer = in_w
    pending = memoryview(stdin_data) if stdin_data is not None else None
    if writer is not None:
        os.set_blocking(writer, False)
        if not pending:
            os.close(writer)
            writer = None
    stdout_chunks = []
    stdout_size = 0
    out_decoder = codecs.getincrementaldecoder("utf-8")("strict")
    err_decoder = codecs.getincrementaldecoder("utf-8")("strict")
    err_tail = bytearray()
    exited = False
    status = None
    while True:
        if exited and not readers:
            break
        now = time.monotonic()
        if now >= deadline:
            result.status = "timeout"
            break
        rlist = list(readers)
        if not exited:
            rlist.append(pidfd)
        wlist = [writer] if writer is not None else []
        try:
            ready_r, ready_w, _ = select.select(rlist, wlist, [], deadline - now)
        except InterruptedError:
            continue
        if ready_w:
            try:
                n = os.write(writer, pending[:READ_CHUNK])
                pending = pending[n:]
            except BlockingIOError:
                pass
            except BrokenPipeError:
                pending = pending[:0]
            if not pending:
                os.close(writer)
                writer = None
        for fd in ready_r:
            if fd == pidfd:
                _, status = os.waitpid(pid, 0)
                exited = True
                continue
            try:
                chunk = os.read(fd, READ_CHUNK)
            except BlockingIOError:
                continue
            if not chunk:
                os.close(fd)
                del readers[fd]
                continue
            if readers[fd] == "out":
                stdout_size += len(chunk)
                if stdout_size > output_limit:
                    result.status = "overflow"
                    break
                stdout_chunks.append(chunk)
                if result.stdout_ok:
                    try:
                        out_decoder.decode(chunk)
                    except UnicodeDecodeError:
                        result.stdout_ok = False
            else:
                if result.stderr_ok:
                    try:
                        err_decoder.decode(chunk)
                    except UnicodeDecodeError:
                        result.stderr_ok = False
                err_tail += chunk
                if len(err_tail) > STDERR_KEEP:
                    del err_tail[: len(err_tail) - STDERR_KEEP]
        if result.status == "overflow":
            break
    result.seconds = time.monotonic() - start
    if result.status != "exit" or not exited:
        kill_tree(pid)
        if not exited:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
    for fd in list(readers):
        os.close(fd)
    if writer is not None:
        os.close(writer)
    os.close(pidfd)
    if result.status == "exit":
        try:
            out_decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            result.stdout_ok = False
        try:
            err_decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            result.stderr_ok = False
        result.returncode = os.waitstatus_to_exitcode(status)
    result.stdout = b"".join(stdout_chunks)
    result.stderr_tail = bytes(err_tail)
    sweep_processes()
    return result


def _text(data):
    """bytes -> str the way ``subprocess.run(..., text=True)`` delivers it (universal newlines)."""
    return data.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")


def stdin_test(source, stdin_text, workdir, timeout, output_limit, fresh=False):
    """One TACO stdin test (execute_std_code's body for one input).  Returns an outcome dict.

    Outcomes: {"k": "out", "text"}  -> the host compares text with the expected output;
              {"k": "timeout"}      -> TACO -1;
              {"k": "error"}        -> TACO runtime_error (-3), e.g. undecodable output;
              {"k": "rc", "rc": N}  -> TACO returncode:N (-3);
              {"k": "overflow"}     -> output beyond the cap: a wrong answer.
    """
    clean_scratch(workdir)
    try:
        data = stdin_text.encode("utf-8")
    except UnicodeEncodeError:
        return {"k": "error", "why": "input is not encodable"}
    first = run_stdin_program(source, workdir, data, None, True, timeout, output_limit, fresh)
    if first.status == "timeout":
        return {"k": "timeout"}
    if first.status == "overflow":
        return {"k": "overflow"}
    if not (first.stdout_ok and first.stderr_ok):
        return {"k": "error", "why": "output is not valid UTF-8"}
    if first.returncode == 0:
        return {"k": "out", "text": _text(first.stdout)}
    last_rc = first.returncode
    stderr_tail = first.stderr_tail
    # Retry A: stdin from a regular file (rescues os.read(0, fstat(0).st_size) idioms).  The file is
    # opened here and handed over as fd 0; if it cannot be written (a program filled /tmp), retry A
    # fails as the official temp-file write would, and retry B follows.
    feed = os.path.join(PRIVATE if SEPARATED else SCRATCH, ".stdin-feed")
    try:
        _write_private_file(feed, data)
        retry = run_stdin_program(source, workdir, None, feed, True, timeout, output_limit, fresh)
    except OSError:
        retry = None
    finally:
        try:
            os.unlink(feed)
        except OSError:
            pass
    if retry is not None:
        if retry.status == "overflow":
            return {"k": "overflow"}
        if retry.status == "exit" and retry.stdout_ok and retry.stderr_ok:
            last_rc = retry.returncode
            if retry.returncode == 0:
                return {"k": "out", "text": _text(retry.stdout)}
    # Retry B: input.txt in the working directory, stdin from /dev/null, output read from output.txt.
    try:
        _write_private_file(os.path.join(workdir, "input.txt"), data, 0o666)
    except OSError:
        return {"k": "rc", "rc": last_rc, "stderr": stderr_tail[-1000:].decode("utf-8", "replace")}
    third = run_stdin_program(source, workdir, None, None, False, timeout, output_limit, fresh)
    if third.status == "exit":
        last_rc = third.returncode
        if third.returncode == 0:
            try:
                produced = _read_program_file(os.path.join(workdir, "output.txt"), output_limit)
                if len(produced) > output_limit:
                    return {"k": "overflow"}
                return {"k": "out", "text": _text(produced), "via": "output.txt"}
            except (OSError, UnicodeDecodeError):
                pass
    return {"k": "rc", "rc": last_rc, "stderr": stderr_tail[-1000:].decode("utf-8", "replace")}


# --------------------------------------------------------------------------------------------
# compile check (TACO's compile_and_get_func) and call-based execution, in a forked child


def _exec_as_runtime_module(program):
    """pyext2 RuntimeModule.from_string: exec into a bare dict, expose the new names as a module."""
    namespace = {}
    exec(program, namespace)
    module = types.ModuleType("tmp_sol", "")
    module.__dict__.update({k: v for k, v in namespace.items() if k not in _MODULE_DUNDERS})
    module.__file__ = "<runtime_module>"
    sys.modules["tmp_sol"] = module
    return module


def _reliability_guard():
    """TACO's reliability_guard (human-eval's), applied before call-based tests as TACO does."""
    builtins.exit = None
    builtins.quit = None
    os.environ["OMP_NUM_THREADS"] = "1"
    for name in (
        "kill", "system", "putenv", "remove", "removedirs", "rmdir", "fchdir", "setuid", "fork", "forkpty",
        "killpg", "rename", "renames", "truncate", "replace", "unlink", "fchmod", "fchown", "chmod", "chown",
        "chroot", "lchflags", "lchmod", "lchown", "getcwd", "chdir",
    ):
        setattr(os, name, None)
    shutil.rmtree = None
    shutil.move = None
    shutil.chown = None
    import subprocess

    subprocess.Popen = None
    builtins.help = None
    for name in ("ipdb", "joblib", "resource", "psutil", "tkinter"):
        sys.modules[name] = None


def _child_send(fd, payload):
    data = struct.pack(">I", len(payload)) + payload
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _child_recv(fd):
    header = b""
    while len(header) < 4:
        chunk = os.read(fd, 4 - len(header))
        if not chunk:
            _exit(0)
        header += chunk
    (size,) = struct.unpack(">I", header)
    body = bytearray()
    while len(body) < size:
        chunk = os.read(fd, min(READ_CHUNK, size - len(body)))
        if not chunk:
            _exit(0)
        body += chunk
    return bytes(body)


def compile_and_serve(program, mode, fn_name, cmd_fd, res_fd, output_limit):
    """Child body: TACO's compile step, then (call mode) answer calls until the runner stops us."""
    send = _child_send
    exit_now = _exit
    try:
        module = _exec_as_runtime_module(program)
        if mode == "call" and "class Solution" in program:
            target = module.Solution()
        else:
            target = module
        method = getattr(target, fn_name if mode == "call" else "code")
        ok = b'{"ok":true}'
    except Exception as exc:  # TACO: any Exception while compiling -> [-2]
        ok = json.dumps({"ok": False, "error": f"{type(exc).__name__}: {exc}"[:2000]}).encode()
        send(res_fd, ok)
        exit_now(0)
    send(res_fd, ok)
    if mode != "call":
        exit_now(0)
    # TACO imported numpy (its header) before the guard disabled os functions numpy's import needs.
    numpy_stub = sys.modules.get("numpy")
    if isinstance(numpy_stub, _LazyNumpy):
        try:
            numpy_stub.ndarray
        except Exception:
            pass
    _reliability_guard()
    loads, dumps, EncodeError = valuecodec.loads, valuecodec.dumps, valuecodec.EncodeError
    while True:
        args = loads(_child_recv(cmd_fd))
        try:
            value = method(*args)
        except Exception as exc:
            send(res_fd, json.dumps({"k": "raised", "exc": f"{type(exc).__name__}: {exc}"[:1000]}).encode())
            continue
        try:
            encoded = dumps(value)
        except EncodeError as exc:
            send(res_fd, json.dumps({"k": "uncomparable", "why": str(exc)}).encode())
            continue
        except Exception as exc:
            send(res_fd, json.dumps({"k": "uncomparable", "why": f"{type(exc).__name__}: {exc}"[:500]}).encode())
            continue
        if len(encoded) > output_limit:
            send(res_fd, b'{"k":"overflow"}')
            continue
        send(res_fd, b'{"k":"value","v":' + encoded + b"}")


def _call_outcome(reply):
    """The outcome of one call, rebuilt from the child's reply with only known fields and types;
    anything else (the program wrote to the result pipe itself) counts as the checker dying."""
    if not isinstance(reply, dict):
        return {"k": "died"}
    kind = reply.get("k")
    if kind == "value" and "v" in reply:
        outcome = {"k": "value", "v": reply["v"]}
        try:
            json.dumps(outcome)  # must survive the trip to the host
        except (ValueError, TypeError, RecursionError):
            return {"k": "died"}
        return outcome
    if kind == "raised":
        return {"k": "raised", "exc": str(reply.get("exc", ""))[:1000]}
    if kind == "uncomparable":
        return {"k": "uncomparable", "why": str(reply.get("why", ""))[:500]}
    if kind == "overflow":
        return {"k": "overflow"}
    return {"k": "died"}


class ServedProgram:
    """A forked child holding one compiled program (TACO's checker process for one sample)."""

    def __init__(self, program, mode, fn_name, workdir, timeout, output_limit):
        self.timeout = timeout
        cmd_r, self.cmd_w = os.pipe()
        self.res_r, res_w = os.pipe()
        devnull = os.open(os.devnull, os.O_RDWR)
        self.pid = os.fork()
        if self.pid == 0:
            try:
                _prepare_child(workdir, 10**6)  # per-call CPU limit is set below, per call deadline by the runner
                os.dup2(devnull, 0)
                os.dup2(devnull, 1)
                os.dup2(devnull, 2)
                os.dup2(cmd_r, 3)
                os.dup2(res_w, 4)
                os.closerange(5, 65536)
                _std_streams()
                compile_and_serve(program, mode, fn_name, 3, 4, output_limit)
            finally:
                _exit(1)
        os.close(cmd_r)
        os.close(res_w)
        os.close(devnull)
        self.pidfd = os.pidfd_open(self.pid)
        self.buf = bytearray()
        self.dead = False
        self.max_frame = output_limit + (1 << 16)

    def read_message(self, timeout):
        """The child's next message (a dict); "timeout" if none within *timeout*; "died" if it ended
        or sent something that is not a message (the child is the program's own process, so a
        program can write to the result pipe: nothing it sends is trusted)."""
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buf) >= 4:
                (size,) = struct.unpack(">I", self.buf[:4])
                if size > self.max_frame:
                    self.dead = True
                    return "died"
                if len(self.buf) >= 4 + size:
                    payload = bytes(self.buf[4 : 4 + size])
                    del self.buf[: 4 + size]
                    try:
                        message = json.loads(payload)
                    except (ValueError, RecursionError, MemoryError):
                        message = None
                    if not isinstance(message, dict):
                        self.dead = True
                        return "died"
                    return message
            left = deadline - time.monotonic()
            if left <= 0:
                return "timeout"
            ready, _, _ = select.select([self.res_r], [], [], left)
            if not ready:
                return "timeout"
            chunk = os.read(self.res_r, READ_CHUNK)
            if not chunk:
                self.dead = True
                return "died"
            self.buf += chunk

    def call(self, encoded_args):
        try:
            _child_send(self.cmd_w, encoded_args)
        except BrokenPipeError:
            self.dead = True
            return "died"
        return self.read_message(self.timeout)

    def close(self):
        for fd in (self.cmd_w, self.res_r, self.pidfd):
            try:
                os.close(fd)
            except OSError:
                pass
        kill_tree(self.pid)
        sweep_processes()


# --------------------------------------------------------------------------------------------
# jobs


class Stopped(Exception):
    """The host asked us to stop the current job (early exit)."""


class Job:
    def __init__(self, runner, message):
        self.runner = runner
        self.id = message["id"]
        self.mode = message["mode"]  # "stdin" | "call"
        self.timeout = float(message["timeout"])
        self.output_limit = int(message["output_limit"])
        self.message = message

    def emit(self, event):
        event["id"] = self.id
        self.runner.channel.send(event)

    def check_stop(self):
        incoming = self.runner.channel.poll()
        if incoming is not None:
            if incoming.get("op") == "stop" and incoming.get("id") == self.id:
                raise Stopped()
            self.runner.backlog.append(incoming)

    def compile(self, program, fn_name):
        """TACO's compile step in a child; returns (status, error, served child or None).

        status: "ok", "error" (TACO [-2]) or "died" (the checker died: TACO [-1]*n)."""
        served = ServedProgram(program, self.mode, fn_name, self.runner.workdir, self.timeout, self.output_limit)
        try:
            reply = served.read_message(self.timeout)
        finally:
            if self.mode != "call" or reply in ("timeout", "died") or not reply.get("ok"):
                served.close()
        if reply == "timeout":
            return "error", "compile step timed out", None
        if reply == "died" or not isinstance(reply.get("ok"), bool):
            return "died", "process died while compiling", None
        if not reply["ok"]:
            return "error", str(reply.get("error", ""))[:2000], None
        return "ok", "", (served if self.mode == "call" else None)

    def run(self):
        m = self.message
        if self.mode == "stdin":
            status, error, _ = self.compile(m["compile_program"], None)
            self.emit({"ev": "compiled", "status": status, "error": error})
            if status != "ok" or m.get("compile_only"):
                return
            passes = [m["exec_program"], m["second_program"]]
            fresh = bool(m.get("fresh_interpreter"))
            outcomes = []
            for index, text in enumerate(m["inputs"]):
                self.check_stop()
                started = time.monotonic()
                outcome = stdin_test(passes[0], text, self.runner.workdir, self.timeout, self.output_limit, fresh)
                outcome["ms"] = round((time.monotonic() - started) * 1000, 3)
                outcomes.append(outcome)
                self.emit({"ev": "test", "pass": 1, "i": index, "outcome": outcome})
            # TACO: when every test ended as returncode:1, all tests run again on the wrapped program.
            if outcomes and all(o["k"] == "rc" and o["rc"] == 1 for o in outcomes):
                for index, text in enumerate(m["inputs"]):
                    self.check_stop()
                    started = time.monotonic()
                    outcome = stdin_test(passes[1], text, self.runner.workdir, self.timeout, self.output_limit, fresh)
                    outcome["ms"] = round((time.monotonic() - started) * 1000, 3)
                    self.emit({"ev": "test", "pass": 2, "i": index, "outcome": outcome})
        else:
            self.run_call(m)

    def run_call(self, m):
        program, fn_name = m["program"], m["fn_name"]
        status, error, served = self.compile(program, fn_name)
        self.emit({"ev": "compiled", "status": status, "error": error})
        if status != "ok" or m.get("compile_only"):
            return
        try:
            for index, args in enumerate(m["args"]):
                self.check_stop()
                if served is None:  # the previous call timed out: a fresh checker, as close as we can get
                    status, error, served = self.compile(program, fn_name)
                    if status != "ok":
                        self.emit({"ev": "test", "pass": 1, "i": index, "outcome": {"k": "died"}})
                        return
                started = time.monotonic()
                reply = served.call(args.encode("utf-8"))
                ms = round((time.monotonic() - started) * 1000, 3)
                if reply == "timeout":
                    served.close()
                    served = None
                    outcome = {"k": "timeout"}
                else:
                    outcome = _call_outcome(reply)
                outcome["ms"] = ms
                self.emit({"ev": "test", "pass": 1, "i": index, "outcome": outcome})
                if outcome["k"] == "died":
                    return
        finally:
            if served is not None:
                served.close()


class Runner:
    def __init__(self):
        self.channel = Channel(0, 1)
        self.backlog = []
        self.workdir = os.path.join(SCRATCH, "work")
        clean_scratch(self.workdir)

    def next_message(self):
        if self.backlog:
            return self.backlog.pop(0)
        return self.channel.recv()

    def serve(self):
        while True:
            message = self.next_message()
            if message is None:
                return  # host went away
            op = message.get("op")
            if op == "hello":
                self.channel.send({"ev": "hello", "version": RUNNER_VERSION, "python": sys.version.split()[0]})
            elif op == "run":
                job = Job(self, message)
                stopped = False
                try:
                    job.run()
                except Stopped:
                    stopped = True
                sweep_processes()
                clean_scratch(self.workdir)
                done = {"ev": "done", "id": job.id, "stopped": stopped}
                left = leftovers()
                if left:  # state a program left that cannot be cleaned here: ask for a fresh sandbox
                    done["retire"] = "; ".join(left)
                self.channel.send(done)
                if left:
                    return
            elif op == "stop":
                continue  # a stop that arrived after its job finished
            else:
                self.channel.send({"ev": "error", "error": f"unknown op {op!r}"})


_RUNNER_STDOUT = None


def main():
    # Python installs a SIGINT handler at start-up; the runner wants none at all.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    # Not dumpable: /proc/1/{mem,environ,fd,...} and ptrace are closed to every unprivileged process.
    _prctl(PR_SET_DUMPABLE, 0)
    if SEPARATED and not _can_drop_privileges():
        # Never run programs that would all fail in _prepare_child: that would read as verdicts.
        sys.stderr.write(f"runner: cannot switch programs to uid {PROGRAM_UID} (needs CAP_SETUID and CAP_SETGID)\n")
        sys.stderr.flush()
        sys.exit(2)
    global _RLIMITS_AT_START
    _RLIMITS_AT_START = _rlimits()
    # Frames go straight to fd 1; nothing may sit in a stdout buffer that a forked child would flush.
    # The object is kept referenced forever: if a forked child dropped it, closing it would close
    # whatever that child has at the same fd number by then.
    global _RUNNER_STDOUT
    _RUNNER_STDOUT = sys.stdout = open(os.devnull, "w")
    if hasattr(sys, "set_int_max_str_digits"):
        sys.set_int_max_str_digits(0)  # TACO ran on Python <= 3.10, which had no digit limit
    exec(WARM_IMPORTS, {})
    register_lazy_numpy()
    gc.collect()
    gc.freeze()  # keep the warm heap shared with forked children
    Runner().serve()


if __name__ == "__main__":
    main()
