"""The benchmark result file: ``benchmarks/results/<stage>-<device>-<date>.json``."""
from __future__ import annotations

import datetime as dt
import json
import os
import re

REPO_RESULTS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                            "benchmarks", "results")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()[:40] or "unknown"


def result_path(stage: str, device_name: str, out_dir: str | None = None) -> str:
    date = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    return os.path.join(out_dir or os.environ.get("DFDC_FAST_RESULTS") or REPO_RESULTS, f"{stage}-{_slug(device_name)}-{date}.json")


def write_result(stage: str, env: dict, inputs: dict, results: dict, out_dir: str | None = None,
                 extra: dict | None = None, path: str | None = None, complete: bool = True) -> str:
    """Write one benchmark run (environment, inputs, per-implementation results); returns the path.

    Benchmarks call it after every implementation with ``complete=False`` and the path of the
    first call, so a run stopped half-way (a time limit) still leaves what it measured.
    """
    payload = {"stage": stage, **env, "date_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
               "complete": complete, "inputs": inputs, "results": results, **(extra or {})}
    path = path or result_path(stage, env.get("device", "unknown"), out_dir)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(payload, f, indent=1)
    os.replace(tmp, path)
    return path
