"""The warm interpreter, and a forked child that behaves like ``python script.py`` started fresh.

The runner imports TACO's header modules once; every program run is a ``fork`` of it, never a new
``python``.  In the child, the standard streams, ``__main__``, ``sys.argv``/``sys.path`` and the way
out (exit status, atexit, flushing) are rebuilt as a new interpreter would have them.
"""

from __future__ import annotations

import atexit
import builtins
import io
import marshal
import os
import signal
import stat
import sys
import traceback
import types
import warnings
from typing import Any, NoReturn, TypeAlias

from .isolation import hard_exit

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


class LazyNumpy(types.ModuleType):
    """Stands in for numpy until a program first touches an attribute, then becomes it.

    importlib.util.LazyLoader is not usable here: the import statement itself reads ``__spec__``,
    which would load numpy in every program.  This stub carries the real spec, so ``import numpy as
    np`` is free; the first missing attribute imports the real numpy and copies its namespace in.
    """

    def __getattr__(self, name: str) -> Any:
        if sys.modules.get("numpy") is self:
            del sys.modules["numpy"]
        import importlib

        real = importlib.import_module("numpy")
        self.__dict__.update(real.__dict__)
        return getattr(real, name)


def _register_lazy_numpy() -> None:
    import importlib.util

    spec = importlib.util.find_spec("numpy")
    if spec is None:
        return
    stub = LazyNumpy("numpy")
    stub.__spec__ = spec
    stub.__file__ = spec.origin
    stub.__loader__ = spec.loader
    stub.__package__ = "numpy"
    sys.modules["numpy"] = stub


def warm_up() -> None:
    """Import what every program finds already imported (called once, before serving)."""
    exec(WARM_IMPORTS, {})
    _register_lazy_numpy()


# -- the forked program ---------------------------------------------------------------------


def _std_stream(fd: int, name: str, mode: str, errors: str, line_buffering: bool) -> io.TextIOWrapper:
    # Built the way CPython's create_stdio builds them, down to the attributes programs read
    # (fast-I/O templates test ``"r" in file.mode``; some print ``sys.stdout.buffer.name``).
    raw = io.FileIO(fd, mode + "b", closefd=False)
    raw.name = name
    buffered = io.BufferedReader(raw) if mode == "r" else io.BufferedWriter(raw)
    text = io.TextIOWrapper(buffered, encoding="utf-8", errors=errors, newline="\n", line_buffering=line_buffering)
    text.mode = mode  # type: ignore[misc]  # read-only in typeshed, plain attribute in CPython
    return text


StdStreams: TypeAlias = tuple[io.TextIOWrapper, io.TextIOWrapper, io.TextIOWrapper]


def _std_streams() -> StdStreams:
    return (
        _std_stream(0, "<stdin>", "r", "strict", False),
        _std_stream(1, "<stdout>", "w", "strict", False),
        _std_stream(2, "<stderr>", "w", "backslashreplace", True),
    )


# The streams of a run whose fds 0-2 are all pipes (every test's first run), built once by the runner
# and never used by it: each forked run finds an untouched copy.  Building them in every child cost
# more than anything else it did before the program (the first stream objects of a fresh fork touch
# many pages that the fork made copy-on-write).  A stream depends on its fd only through what fstat
# and lseek say at construction, which is the same for any pipe: so they are built only when the
# runner's own fds 0-2 are pipes too, and used only for runs on pipes.
_piped_streams: StdStreams | None = None
# The runner's own standard streams, kept referenced here: a child replaces sys.stdin/stdout/stderr
# and their __std*__ twins, and were these its last references, the child would tear the runner's
# stream objects down first (flushing and freeing them wrote some 40 pages, each a copy-on-write
# fault, before every program).
_runner_streams: tuple[object, ...] = ()


def prepare_streams() -> None:
    """Build the streams for runs on pipes now, and keep the runner's (called once by the runner,
    before serving)."""
    global _piped_streams, _runner_streams
    _runner_streams = (sys.stdin, sys.stdout, sys.stderr, sys.__stdin__, sys.__stdout__, sys.__stderr__)
    if all(stat.S_ISFIFO(os.fstat(fd).st_mode) for fd in (0, 1, 2)):
        _piped_streams = _std_streams()


def install_std_streams(on_pipes: bool = False) -> None:
    """Fresh sys.stdin/stdout/stderr over fds 0-2, configured like a new interpreter's; *on_pipes*:
    fds 0-2 are all pipes (the runner's prepared streams serve, when it has them)."""
    streams = _piped_streams if on_pipes and _piped_streams is not None else _std_streams()
    sys.stdin, sys.stdout, sys.stderr = streams
    sys.__stdin__, sys.__stdout__, sys.__stderr__ = streams  # type: ignore[misc]  # final in typeshed only


def _exit_status(code: object) -> int:
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


def _finish_like_interpreter(
    status: int, BaseException: Any = BaseException, getattr: Any = getattr, atexit: Any = atexit, sys: Any = sys
) -> NoReturn:
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
    hard_exit(status)


def compile_script(source: str, path: str) -> types.CodeType:
    """*source* compiled as the script *path*: the one place programs are compiled, so that a program
    compiled ahead (``precompiled_script``) and one compiled in its own run get the same flags.
    ``dont_inherit``: this module's ``from __future__ import annotations`` must not reach the program
    (TACO's ``python`` evaluates annotations, so ``def f(x: Undefined)`` is a NameError there)."""
    return compile(source, path, "exec", dont_inherit=True)


def precompiled_script(source: str, path: str) -> bytes:
    """*source* compiled as the script *path* and marshalled, for every run of one job to share (a
    compile per run cost as much as the rest of a trivial run); b"" when the compile fails or warns,
    and each run then compiles for itself, so that its error or warning appears where it always did.
    Called in a child that has run no program code yet: the bytes are trusted, and the runner never
    compiles untrusted source itself (a hostile program could hang or crash the compiler)."""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            code = compile_script(source, path)
        return b"" if caught else marshal.dumps(code)
    except Exception:
        return b""


def run_program_child(
    source: str, workdir: str, path: str, code: types.CodeType | None = None, on_pipes: bool = False
) -> NoReturn:
    """Body of a forked child that runs *source* (or its *code*, compiled ahead) as a fresh
    ``__main__`` script; *on_pipes*: its fds 0-2 are all pipes.  Never returns."""
    status = 1
    try:
        install_std_streams(on_pipes)
        sys.argv = [path]
        sys.path[0] = workdir
        main = types.ModuleType("__main__")
        main.__file__ = path
        main.__builtins__ = builtins  # type: ignore[attr-defined]
        sys.modules["__main__"] = main
        try:
            if code is None:
                code = compile_script(source, path)
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
