"""The benchmark result file: ``benchmarks/results/<stage>-<device>-<date>.json``."""
from __future__ import annotations

import datetime as dt
import json
import os
import re
import signal
import sys

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


class WrittenOnStop:
    """Writes what a benchmark has measured when it is stopped (Ctrl-C, SIGTERM from a time
    limit), then exits with 130: ``results`` is the dict the benchmark fills as it goes.

    ``inputs`` and ``path`` may be updated as the run goes (``path``: the partial file the
    benchmark already writes after each implementation, which is then completed in place).
    """

    def __init__(self, stage: str, device, results: dict, out_dir: str | None = None, inputs: dict | None = None):
        self.stage, self.device, self.results, self.out_dir = stage, device, results, out_dir
        self.inputs = inputs or {}
        self.path: str | None = None
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._stop)

    def _stop(self, signum, frame) -> None:
        from dfdc_fast.bench.env import environment

        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL)  # a second signal stops at once
        name = signal.Signals(signum).name
        path = write_result(self.stage, environment(self.device), self.inputs, self.results, self.out_dir,
                            extra={"stopped": name}, path=self.path, complete=False)
        print(f"stopped by {name}: wrote what was measured to {path}", file=sys.stderr, flush=True)
        raise SystemExit(130)
