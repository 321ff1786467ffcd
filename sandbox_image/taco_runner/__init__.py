"""The in-sandbox test runner: one long-lived process per sandbox (its PID 1), started as
``python3 -m taco_runner`` from /opt/taco-runner.

It reads jobs from the host as framed messages on stdin and answers on stdout, one message per
finished test, so the host can judge while later tests still run (``protocol`` documents every
message).  Design points:

* Warm interpreter: the TACO header modules are imported once at start; every program run is a
  ``fork`` of the warm interpreter, never a fresh ``python`` (``interpreter``).  The forks are made by
  the fork server, forked once from the warm runner before the first job, so that the runner itself
  never forks during a job and its own work takes no copy-on-write page faults (``forkserver``).
* No signal handlers anywhere: the runner waits for each run with a deadline (select on the fork
  server's report of the run's end and on the run's pipes) and kills the program when the deadline
  passes; RLIMIT_CPU is the second line (``watched_run``).  Before it kills a run past its deadline it
  reads where the run's time went (``cpuclock``), so the host can tell a busy machine from a slow
  program.  As PID 1 with default dispositions, the runner cannot be signalled by the programs it
  runs, which run as another uid (``isolation``); nor can the fork server, which runs as root.
* Expected outputs never come here.  The runner reports what a program did (its stdout, exit
  status, timeout, or a call's encoded return value) and the host judges.
* After every run all program processes in the sandbox are killed and reaped (by the fork server,
  their child subreaper), and the scratch places are wiped, so nothing outlives its test
  (``hygiene``).

The stdin procedure reproduces TACO HEAD's ``execute_std_code`` (``stdin_procedure``); the
call-based procedure keeps one process per sample so state persists across tests, as in TACO
(``served_program``).  ``serve`` is the main loop, ``jobs`` one job.

The package name is unique on purpose: a forked program shares the runner's ``sys.modules``, so a
module here named ``protocol`` or ``runner`` would answer a program's ``import protocol``.

Standard library only (plus the numpy the TACO header imports), Python 3.10+.  On the host only
``protocol`` and ``valuecodec`` are imported; importing this package does nothing.
"""
