"""``harness cache info`` and ``harness cache clear`` (all, ``--older-than``, ``--timeouts-only``) on a
private cache filled by a real ``harness evaluate``; and a cache file from before entries were dated,
migrated in place."""

from __future__ import annotations

import datetime
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "samples" / "problems.jsonl"
SUM = "a, b = map(int, input().split())\nprint(a + b)\n"
SLEEPS = "import time\ntime.sleep(5)\n"


def harness(*args: str, cache: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TACO_HARNESS_CACHE_DIR": str(cache)}
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, cwd=ROOT, env=env)


def evaluate(tmp_path: Path, cache: Path, output: str) -> subprocess.CompletedProcess[str]:
    generations = tmp_path / "generations.json"
    generations.write_text(json.dumps([{"task_id": 0, "output": [SUM, SLEEPS]}]))
    return harness(
        "evaluate", "--dataset", str(SAMPLE), "--indices", "0", "--generations", str(generations),
        "--output", str(tmp_path / output), "--timeout", "1", cache=cache,
    )  # fmt: skip


def info(cache: Path) -> dict[str, str]:
    done = harness("cache", "info", cache=cache)
    assert done.returncode == 0, done.stderr
    return dict(line.split(": ", 1) for line in done.stdout.splitlines())


def test_info_and_clear_on_a_cache_filled_by_an_evaluation(tmp_path, sandbox_image):
    cache = tmp_path / "cache"
    assert info(cache) == {"cache": f"{cache / 'verdicts-v1.sqlite'} (none yet)"}
    first = evaluate(tmp_path, cache, "first")
    assert first.returncode == 0, first.stderr
    assert json.loads((tmp_path / "first" / "results.json").read_text()) == {"0": [[True] * 4, [-1]]}

    shown = info(cache)
    assert shown["cache"] == str(cache / "verdicts-v1.sqlite")
    assert shown["entries"] == "2 (1 holding a timeout)"
    assert shown["size"].endswith(("KiB", "MiB"))
    today = datetime.date.today().isoformat()
    assert shown["oldest"].startswith(today) and shown["newest"].startswith(today)

    cleared = harness("cache", "clear", "--timeouts-only", cache=cache)
    assert cleared.returncode == 0 and cleared.stdout.startswith("removed 1 cached verdict(s)"), cleared.stdout
    assert info(cache)["entries"] == "1 (0 holding a timeout)"
    again = evaluate(tmp_path, cache, "again")  # the timeout runs again; the pass is still cached
    assert again.returncode == 0 and "1 run, 1 cached" in again.stdout, again.stdout + again.stderr

    kept = harness("cache", "clear", "--older-than", "2000-01-01", cache=cache)
    assert kept.stdout.startswith("removed 0 ")
    tomorrow = (datetime.date.today() + datetime.timedelta(days=1)).isoformat()
    cleared = harness("cache", "clear", "--older-than", tomorrow, cache=cache)
    assert cleared.stdout.startswith("removed 2 "), cleared.stdout
    assert harness("cache", "clear", cache=cache).stdout.startswith("removed 0 ")
    assert info(cache)["entries"] == "0 (0 holding a timeout)"


def test_a_cache_from_before_dates_is_migrated_in_place(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    with sqlite3.connect(cache / "verdicts-v1.sqlite") as db:  # the table as it was
        db.execute("CREATE TABLE verdicts (key TEXT PRIMARY KEY, record TEXT NOT NULL)")
        for key, verdicts in (("a", ["passed"]), ("b", ["passed", "timeout"]), ("c", ["call_timeout"])):
            db.execute("INSERT INTO verdicts VALUES (?, ?)", (key, json.dumps({"status": "judged", "verdicts": verdicts})))
    shown = info(cache)
    assert shown["entries"] == "3 (2 holding a timeout)"
    assert shown["oldest"] == "- (3 undated: written before entries were dated)"
    assert harness("cache", "clear", "--timeouts-only", "--older-than", "2000-01-01", cache=cache).stdout.startswith("removed 2 ")
    assert info(cache)["entries"] == "1 (0 holding a timeout)"
    bad = harness("cache", "clear", "--older-than", "yesterday", cache=cache)
    assert bad.returncode == 2 and "--older-than" in bad.stderr
