"""Writing an output file atomically: whole, then renamed into place, so that a reader (or a
rerun after a crash) never takes a half-written file for a complete one."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_bytes_atomic(path: Path, content: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(content)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, data: Any) -> None:
    """*data* as indented JSON (the layout of TACO's own output files)."""
    write_bytes_atomic(path, json.dumps(data, indent=4).encode("utf-8"))
