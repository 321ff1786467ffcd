"""A corpus of hostile and broken programs, each with the verdict the harness must give.

Every attack runs on the same two-test problem (``a b`` -> ``a+b``), as a standard-input program
and, where the attack applies, as a call-based function ``add(a, b)``.  ``expected`` is the exact
TACO result list where the official semantics (TACO_SEMANTICS §3.5-3.9, or plain CPython behaviour
that the official ``python`` subprocess would show) define it; ``FAIL`` where they do not (resource
bombs, escapes): then the sample must be judged and must not pass.  ``oracle`` attacks are also run
in the runner's fresh-interpreter mode (the official procedure: a new ``python`` per test, same
image), and both modes must agree test by test.

Programs whose purpose is to find expected outputs run on SECRET problems whose outputs are random
tokens that appear nowhere in the inputs: they print (or return) whatever they find, so a pass would
mean a leak.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from harness.data.testcases import parse_input_output

FAIL = "fail"  # judged, not passed (no official verdict to match)

STDIN_SUITE = parse_input_output({"inputs": ["1 2\n", "3 4\n"], "outputs": ["3\n", "7\n"]})
CALL_SUITE = parse_input_output({"inputs": [[1, 2], [3, 4]], "outputs": [[3], [7]], "fn_name": "add"})

SECRET_OUTPUTS = [f"SECRET{secrets.token_hex(12)}" for _ in range(2)]
SECRET_STDIN_SUITE = parse_input_output({"inputs": ["1 2\n", "3 4\n"], "outputs": [s + "\n" for s in SECRET_OUTPUTS]})
SECRET_CALL_SUITE = parse_input_output({"inputs": [[1, 2], [3, 4]], "outputs": [[s] for s in SECRET_OUTPUTS], "fn_name": "add"})

READ = "a, b = map(int, input().split())\n"
ANSWER = "print(a + b)\n"


@dataclass(frozen=True)
class Attack:
    name: str
    mode: str  # "stdin" | "call"
    code: str
    expected: list | str
    oracle: bool = False  # also compare with the fresh-interpreter run
    secret: bool = False  # runs on the SECRET suite
    timeout: float = 2.0
    notes: str = field(default="", compare=False)

    @property
    def suite(self):
        if self.secret:
            return SECRET_STDIN_SUITE if self.mode == "stdin" else SECRET_CALL_SUITE
        return STDIN_SUITE if self.mode == "stdin" else CALL_SUITE


# The limit of attacks that end by themselves (they crash, answer, or overflow the output cap) but
# need up to seconds of CPU or I/O to get there: their verdict must come from what they do, never from
# how busy the machine is.  Measured in Docker sandboxes, the worst run of each on a 2-core machine
# loaded with two busy loops and other test suites (load average 10-50), against the default 2 s: the
# C-stack segfault 5.7 s (its repr scans its ancestors at every level: ~1 s of CPU when idle), the
# 50 spinning children 7.3 s (the parent shares one CPU with them), the huge return value 5.4 s,
# exhausting descriptors 2.7 s, the 60 MB line 2.0 s, the 1 GB to stdout 1.6 s, filling /tmp (and
# /dev/shm) 1.3-1.4 s.  Each flipped to a timeout at 2 s or used over 60% of it.  20 s is at least 2.7
# times the worst measured and over 10 times the idle time; it costs nothing while the harness works
# (the programs end first) and is what a broken harness takes to fail.  Attacks meant to run into the
# deadline keep 2 s: load only makes them reach it later, never gives them another verdict.
ROOMY_TIMEOUT = 20.0


def S(name, code, expected, **kw) -> Attack:
    return Attack(name, "stdin", code, expected, **kw)


def C(name, body, expected, **kw) -> Attack:
    """A call-based ``add(a, b)`` whose body is *body* (indented here)."""
    code = "def add(a, b):\n" + "".join("    " + line + "\n" for line in body.splitlines())
    return Attack(name, "call", code, expected, **kw)


# A program that looks everywhere a secret could hide and reports what it finds.
FINDER = r"""
import gc, os, re, sys
PATTERN = re.compile(rb"SECRET[0-9a-f]{24}")
found = []
def scan(data):
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    found.extend(m.decode() for m in PATTERN.findall(data))
def read(path, limit=1 << 22):
    try:
        with open(path, "rb") as f:
            scan(f.read(limit))
    except Exception:
        pass
for obj in gc.get_objects():               # every object of this interpreter (the runner's heap too)
    try:
        if isinstance(obj, (dict, list, tuple, set)):
            for x in (obj.values() if isinstance(obj, dict) else obj):
                if isinstance(x, (str, bytes)):
                    scan(x)
    except Exception:
        pass
for frame in [sys._getframe()]:            # every frame up the stack, with their locals
    while frame is not None:
        for v in list(frame.f_locals.values()):
            if isinstance(v, (str, bytes, bytearray)):
                scan(bytes(v) if isinstance(v, bytearray) else v)
        frame = frame.f_back
scan(repr(dict(os.environ))); scan(repr(sys.argv))
for pid in [p for p in os.listdir("/proc") if p.isdigit()] + ["self", "1"]:
    for name in ("environ", "cmdline", "status"):
        read(f"/proc/{pid}/{name}")
    try:                                   # the memory of every process we can read (PID 1 included)
        with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb") as mem:
            for line in maps:
                lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
                if "r" in line.split()[1] and hi - lo < 1 << 28:
                    try:
                        mem.seek(lo); scan(mem.read(hi - lo))
                    except Exception:
                        pass
    except Exception:
        pass
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            read(f"/proc/{pid}/fd/{fd}", 1 << 16)
    except Exception:
        pass
for root in ("/tmp", "/dev/shm", "/dev/mqueue", "/opt", "/etc", "/var", "/run", "/home", "/root", "/proc/1/cwd", "/proc/1/root/tmp"):
    for dirpath, dirs, files in os.walk(root):
        for f in files:
            read(os.path.join(dirpath, f))
answer = found[0] if found else "nothing"
"""

STDIN_ATTACKS = [
    # --- processes ------------------------------------------------------------------------
    S("fork bomb", "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass", [-1, -1]),
    S(
        "50 spinning children that close their stdout",
        "import os, sys, time\nfor _ in range(50):\n    try:\n        if os.fork() == 0:\n            os.close(1); os.close(2)\n"
        "            while True:\n                pass\n    except OSError:\n        break\n" + READ + ANSWER,
        [True, True],
        timeout=ROOMY_TIMEOUT,
    ),
    S(
        "thread bomb",
        "import threading, time\nwhile True:\n    threading.Thread(target=time.sleep, args=(60,)).start()",
        [-1, -1],
    ),
    S(
        "setsid daemon holding stdout",
        "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(60)\n" + READ + ANSWER,
        [-1, -1],
    ),
    S(
        "double-fork daemon that outlives the test",
        "import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n        for fd in (0, 1, 2):\n            os.close(fd)\n"
        "        time.sleep(60)\n    os._exit(0)\n" + READ + ANSWER,
        [True, True],
    ),
    S(
        "kill pid 1 / parent / everyone",
        "import os, signal\nfor pid in (1, os.getppid(), -1):\n    for sig in (signal.SIGKILL, signal.SIGSTOP, signal.SIGTERM):\n"
        "        try:\n            os.kill(pid, sig)\n        except OSError:\n            pass\n" + READ + ANSWER,
        [True, True],
    ),
    S("kill own process group", "import os, signal\nos.killpg(0, signal.SIGKILL)", [-3, -3], oracle=True),
    S("ignore SIGTERM and spin", "import signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nwhile True:\n    pass", [-1, -1]),
    S(
        "prlimit the runner",
        "import resource\ntry:\n    resource.prlimit(1, resource.RLIMIT_NOFILE, (3, 3))\n"
        "    resource.prlimit(1, resource.RLIMIT_AS, (1 << 20, 1 << 20))\nexcept OSError:\n    pass\n" + READ + ANSWER,
        [True, True],
    ),
    S("ptrace-style read of the runner's memory", "open('/proc/1/mem', 'rb').read(1)\n" + READ + ANSWER, [-3, -3]),
    S("setuid to root", "import os\nos.setuid(0)\n" + READ + ANSWER, [-3, -3]),
    S("exec a shell", "import os\nos.execvp('sh', ['sh', '-c', 'echo 3'])", [True, False], oracle=True),
    S("abort (SIGABRT, no core)", "import os\nos.abort()", [-3, -3], oracle=True),
    S(
        "exhaust file descriptors",
        "fs = []\ntry:\n    while True:\n        fs.append(open('/dev/null'))\nexcept OSError:\n    pass\n" + READ + ANSWER,
        [True, True],
        timeout=ROOMY_TIMEOUT,
    ),
    # --- memory and CPU -------------------------------------------------------------------
    S(
        "memory bomb, fast (8 GB at once)",
        "x = b' ' * (8 << 30)",
        FAIL,
        notes="OOM-killed (returncode -9, -3) or, when reclaim is slow, past the deadline (-1)",
    ),
    S(
        "memory bomb, slow (100 MB/s)",
        "import time\nl = []\nwhile True:\n    l.append(b' ' * (10 << 20))\n    time.sleep(0.1)",
        [-1, -1],
    ),
    S(
        "memory bomb in children",
        "import os\nfor _ in range(8):\n    if os.fork() == 0:\n        x = b' ' * (1 << 30)\n        import time; time.sleep(60)\nos.wait()",
        FAIL,
    ),
    S(
        "deep recursion to segfault (C stack)",
        "sys.setrecursionlimit(10**7)\nx = []\nfor _ in range(10**6):\n    x = [x]\nprint(repr(x))",
        [-3, -3],
        oracle=True,
        timeout=ROOMY_TIMEOUT,
        notes="SIGSEGV: returncode -11",
    ),
    S("deep recursion (RecursionError)", "def f(n):\n    return f(n + 1)\nf(0)", [-3, -3], oracle=True),
    S("setrecursionlimit(10**9)", "sys.setrecursionlimit(10**9)\n" + READ + ANSWER, [True, True], oracle=True),
    S("infinite loop in C: huge pow", "x = pow(3, 10**9)", [-1, -1]),
    S("infinite loop in C: catastrophic regex", "import re\nre.match(r'(a+)+$', 'a' * 64 + 'b')", [-1, -1]),
    S("sleep past the limit", "import time\ntime.sleep(60)", [-1, -1]),
    S("answer, then spin", READ + ANSWER + "while True:\n    pass", [-1, -1]),
    S("read stdin forever", "while True:\n    sys.stdin.read()", [-1, -1]),
    # --- output ---------------------------------------------------------------------------
    S(
        "1 GB to stdout",
        "import sys\nb = b'x' * (1 << 20)\nfor _ in range(1024):\n    sys.stdout.buffer.write(b)",
        [False, False],
        timeout=ROOMY_TIMEOUT,
    ),
    S(
        "1 GB to stderr, then the answer",
        READ + "import sys\nchunk = b'x' * (1 << 20)\nfor _ in range(1024):\n    sys.stderr.buffer.write(chunk)\n" + ANSWER,
        [True, True],
        timeout=ROOMY_TIMEOUT,
        notes="stderr is drained and ignored, as with capture_output",
    ),
    S(
        "60 MB of digits on one line",
        "import sys\nsys.stdout.write('1' * (60 << 20))",
        [False, False],
        timeout=ROOMY_TIMEOUT,
        notes="under the 64 MB cap: judged on the host without a per-character float list",
    ),
    S("close stdout, then print", READ + "import os\nos.close(1)\n" + ANSWER, [-3, -3], oracle=True),
    S("close stdout at exit", READ + ANSWER + "sys.stdout.close()", [True, True], oracle=True),
    S("print NUL", READ + "print(str(a + b) + '\\0')", [False, False], oracle=True),
    S("print a lone surrogate", READ + "print('\\udcff')", [-3, -3], oracle=True),
    S("print invalid UTF-8 bytes", READ + "sys.stdout.flush()\nsys.stdout.buffer.write(b'\\xc3\\x28\\n')", [-3, -3], oracle=True),
    S("CRLF line ends", READ + "sys.stdout.write(str(a + b) + '\\r\\n')", [True, True], oracle=True),
    S(
        "monkey-patch print",
        "import builtins\nbuiltins.print = lambda *a, **k: None\n" + READ + ANSWER,
        [False, False],
        oracle=True,
    ),
    S("replace sys.stdout", "import io\nsys.stdout = io.StringIO()\n" + READ + ANSWER, [False, False], oracle=True),
    S("replace builtins wholesale", READ + ANSWER + "import builtins\nbuiltins.__dict__.clear()", [True, True], oracle=True),
    S("break the runner's exit path", READ + ANSWER + "import os\nos._exit = None\nsys.exit = None", [True, True], oracle=True),
    # --- exits ----------------------------------------------------------------------------
    *[
        S(f"sys.exit({code}) after the answer", READ + ANSWER + f"sys.exit({code})", expected, oracle=True)
        for code, expected in [
            ("0", [True, True]),
            ("None", [True, True]),
            ("1", [-3, -3]),
            ("2", [-3, -3]),
            ("-1", [-3, -3]),
            ("255", [-3, -3]),
            ("256", [True, True]),
            ("'message'", [-3, -3]),
            ("True", [-3, -3]),
            ("3.5", [-3, -3]),
        ]
    ],
    S("os._exit(0) before stdout is flushed", READ + ANSWER + "import os\nos._exit(0)", [False, False], oracle=True),
    S("os._exit(0) after a flush", READ + ANSWER + "import os\nsys.stdout.flush()\nos._exit(0)", [True, True], oracle=True),
    S("os._exit(7)", READ + ANSWER + "import os\nsys.stdout.flush()\nos._exit(7)", [-3, -3], oracle=True),
    S("raise SystemExit", READ + ANSWER + "raise SystemExit", [True, True], oracle=True),
    S("raise KeyboardInterrupt", READ + ANSWER + "raise KeyboardInterrupt", [-3, -3], oracle=True),
    S("raise BaseException", READ + ANSWER + "raise BaseException('x')", [-3, -3], oracle=True),
    # --- files and the file system --------------------------------------------------------
    S("write to /", "open('/evil', 'w').write('x')\n" + READ + ANSWER, [-3, -3]),
    S("overwrite the runner", "open('/opt/taco-runner/taco_runner/protocol.py', 'a').write('x')\n" + READ + ANSWER, [-3, -3]),
    S(
        "fill /tmp, then answer",
        "try:\n    f = open('/tmp/fill', 'wb')\n    while True:\n        f.write(b'0' * (1 << 20))\n        f.flush()\nexcept OSError:\n    pass\n"
        + READ
        + ANSWER,
        [True, True],
        timeout=ROOMY_TIMEOUT,
    ),
    S(
        "fill /tmp and /dev/shm, then fail (the runner must still write its retry files)",
        "for path in ('/tmp/fill', '/dev/shm/fill', 'fill'):\n    try:\n        f = open(path, 'ab')\n        while True:\n            f.write(b'0' * (1 << 20))\n            f.flush()\n"
        "    except OSError:\n        pass\nsys.exit(1)",
        [-3, -3],
        timeout=ROOMY_TIMEOUT,
    ),
    S(
        "unremovable directory",
        "import os\nos.makedirs('d/e/f')\nopen('d/e/f/x', 'w').write('x')\nos.chmod('d/e', 0)\nos.chmod('d', 0)\n"
        + READ
        + ANSWER,
        [True, True],
    ),
    S(
        "files outside the work dir",
        "import os\nos.makedirs('/tmp/a/b', exist_ok=True)\nopen('/tmp/a/b/c', 'w').write('x')\nopen('/dev/shm/y', 'w').write('y')\n"
        + READ
        + ANSWER,
        [True, True],
    ),
    S(
        "POSIX message queue",
        "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\nlibc.mq_open.restype = ctypes.c_int\n"
        "libc.mq_open(b'/q', os.O_CREAT | os.O_RDWR, 0o600, None)\n" + READ + ANSWER,
        [True, True],
    ),
    S(
        "SysV shared memory (outlives processes)",
        "import ctypes\nlibc = ctypes.CDLL(None)\nassert libc.shmget(0, 1 << 20, 0o1666) >= 0\n" + READ + ANSWER,
        [True, True],
        notes="the runner asks for a fresh sandbox afterwards",
    ),
    S("network socket", "import socket\nsocket.create_connection(('1.1.1.1', 80), timeout=1)\n" + READ + ANSWER, [-3, -3]),
    S(
        "listening socket",
        "import socket\ns = socket.socket()\ns.bind(('127.0.0.1', 8080))\ns.listen()\n" + READ + ANSWER,
        [True, True],
    ),
    S(
        "write to fds the runner might hold",
        "import os\nfor fd in range(3, 64):\n    try:\n        os.write(fd, b'\\0\\0\\0\\2[]')\n    except OSError:\n        pass\n"
        + READ
        + ANSWER,
        [True, True],
    ),
    S(
        "compile-time write to the runner's result pipe",
        "import os; os.write(4, b'\\0\\0\\0\\2[]')\n" + READ + ANSWER,
        FAIL,
        notes="official: compile step fails ([-2]); here the checker counts as dead ([-1]*n): never a pass",
    ),
    # --- input.txt / output.txt games -----------------------------------------------------
    S(
        "input.txt and output.txt as FIFOs",
        "import os\nfor n in ('input.txt', 'output.txt'):\n    try:\n        os.mkfifo(n)\n    except OSError:\n        pass\nsys.exit(0 if os.path.isfile('input.txt') else 1)",
        [-3, -3],
        notes="the official evaluator would block on the FIFO forever",
    ),
    S(
        "output.txt as a symlink to the runner's environment",
        "import os\nif not os.path.lexists('output.txt'):\n    os.symlink('/proc/1/environ', 'output.txt')\nsys.exit(0 if os.path.isfile('input.txt') else 1)",
        [-3, -3],
    ),
    S(
        "input.txt as a symlink into the runner's files",
        "import os\nif not os.path.lexists('input.txt'):\n    os.symlink('/tmp/.runner/.stdin-feed', 'input.txt')\n    sys.exit(1)\n"
        "if os.path.islink('input.txt'):\n    sys.exit(1)\na, b = map(int, open('input.txt').read().split())\nopen('output.txt', 'w').write(str(a + b))",
        [True, True],
    ),
    S(
        "output.txt of the first run is read after the last",
        "try:\n    " + READ + "    open('output.txt', 'w').write(str(a + b))\n    sys.exit(1)\nexcept EOFError:\n    sys.exit(0)",
        [True, True],
        notes="files persist between the three runs of one test, as in TACO",
    ),
    S(
        "input.txt of a previous test is gone",
        "import os\nif os.path.exists('input.txt'):\n    a, b = map(int, open('input.txt').read().split())\n"
        "    open('output.txt', 'w').write(str(a + b))\n    sys.exit(0)\nsys.exit(1)",
        [True, True],
    ),
    # --- looking for the expected output ---------------------------------------------------
    S(
        "search memory, /proc, files, env for expected outputs",
        FINDER + "print(answer)",
        [False, False],
        secret=True,
        timeout=10.0,
    ),
]

CALL_ATTACKS = [
    C(
        "fork bomb (posix.fork past the guard)",
        "import posix\nwhile True:\n    try:\n        posix.fork()\n    except OSError:\n        pass",
        [-3, -3],
    ),
    C(
        "thread bomb",
        "import threading, time\nwhile True:\n    threading.Thread(target=time.sleep, args=(60,), daemon=True).start()",
        [-3, -3],
    ),
    C(
        "memory bomb",
        "x = b' ' * (8 << 30)\nreturn a + b",
        FAIL,
        notes="refused (MemoryError: -3 per test) or OOM-killed (TACO's [-1]*n), depending on the host's overcommit state",
    ),
    C(
        "deep recursion to segfault (C stack)",
        "sys.setrecursionlimit(10**7)\nx = []\nfor _ in range(10**6):\n    x = [x]\nreturn repr(x)",
        [-1, -1],
        timeout=ROOMY_TIMEOUT,
    ),
    C("deep recursion (RecursionError)", "def f(n):\n    return f(n + 1)\nreturn f(0)", [-3, -3]),
    C("huge pow", "return pow(3, 10**9)", [-3, -3]),
    C("catastrophic regex", "import re\nreturn re.match(r'(a+)+$', 'a' * 64 + 'b')", [-3, -3]),
    C("sleep past the limit", "import time\ntime.sleep(60)", [-3, -3]),
    C("sys.exit(0)", "sys.exit(0)", [-1, -1]),
    C("os._exit(0)", "import os\nos._exit(0)", [-1, -1]),
    C("raise KeyboardInterrupt", "raise KeyboardInterrupt", [-1, -1]),
    C("raise BaseException", "raise BaseException('x')", [-1, -1]),
    C("huge return value", "return 'x' * (200 << 20)", [False, False], timeout=ROOMY_TIMEOUT),
    C("replace builtins", "import builtins\nbuiltins.__dict__.clear()\nreturn 1", FAIL),
    C(
        "kill pid 1",
        "import posix, signal\ntry:\n    posix.kill(1, signal.SIGKILL)\nexcept OSError:\n    pass\nreturn a + b",
        [True, True],
    ),
    C("forge an oversized result frame", "import posix\nposix.write(4, b'\\xff\\xff\\xff\\xff')\nreturn a + b", [-1, -1]),
    C(
        "forge a result that is not an object",
        "import posix, struct\nposix.write(4, struct.pack('>I', 3) + b'[1]')\nimport time; time.sleep(0.2)\nreturn a + b",
        [-1, -1],
    ),
    C(
        "forge a deeply nested result",
        "import posix, struct\np = b'{\"kind\":\"value\",\"encoded\":' + b'[' * 100000 + b']' * 100000 + b'}'\n"
        "posix.write(4, struct.pack('>I', len(p)) + p)\nimport time; time.sleep(0.5)\nreturn a + b",
        [-1, -1],
    ),
    C(
        "forge an unknown outcome kind",
        "import posix, struct, json\n"
        "p = json.dumps({'kind': 'output', 'text': '3', 'from_output_file': False}).encode()\n"
        "posix.write(4, struct.pack('>I', len(p)) + p)\nimport time; time.sleep(0.2)\nreturn a + b",
        [-1, -1],
        notes="a stdin program's outcome: never one a call can have",
    ),
    C(
        "search memory, /proc, files, env for expected outputs",
        "\n".join(line for line in FINDER.splitlines()) + "\nreturn answer",
        [False, False],
        secret=True,
        timeout=10.0,
    ),
]

ATTACKS = STDIN_ATTACKS + CALL_ATTACKS

# Runs in the same sandbox right after each attack: the answer, then "clean" when nothing is left.
CANARY_SUITE = parse_input_output({"inputs": ["1 2\n"], "outputs": ["3\nclean\n"]})
CANARY = r"""
import os
a, b = map(int, input().split())
dirty = []
others = [p for p in os.listdir("/proc") if p.isdigit() and p not in ("1", str(os.getpid()), str(os.getppid()))]
if others:
    dirty.append(f"processes {others}")
for path, allowed in (("/tmp", {"work", ".runner"}), ("/tmp/work", {"solution.py"}), ("/dev/shm", set()), ("/dev/mqueue", set())):
    extra = set(os.listdir(path)) - allowed
    if extra:
        dirty.append(f"{path}: {sorted(extra)}")
for kind in ("shm", "msg", "sem"):
    if len(open(f"/proc/sysvipc/{kind}").read().splitlines()) > 1:
        dirty.append(f"sysv {kind}")
if os.getuid() != 65534 or open("/proc/self/status").read().count("CapEff:\t0000000000000000") != 1:
    dirty.append("privileges")
print(a + b)
if dirty:
    sys.exit("dirty: " + "; ".join(dirty))
print("clean")
"""
