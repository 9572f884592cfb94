"""``python -m dfdc_fast.extract``: face extraction over a dataset (resumable, shardable).

Today this job runs the stages that exist: dataset discovery and decoding (NVDEC on a
GPU, PyAV on the CPU) of the frames the detector will sample. Face detection
(``dfdc_fast.detect``) and 3D tracking (``dfdc_fast.track``) are not built yet, so no
face clips or crops are written; the summary says so. Every video still gets a status
in the index, and a finished video (its JSON exists) is skipped on a re-run.

With no arguments it runs on the demo clips shipped in the package.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Optional

import torch

from dfdc_fast.data import Dataset, VideoEntry, from_paths
from dfdc_fast.io import DECODERS, Every, VideoDecodeError, read_videos, resolve_decoder

DEMO_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "assets", "demo")
#: Stages of the full job that are not implemented yet (and the issue that builds each).
MISSING_STAGES = {"detect": "batched GPU MTCNN (issue #4)", "track": "dfdc_fast.track is built; the job runs it once detection exists (issues #4, #5)",
                  "crops": "face clips and 2D crops (issue #5)"}
INDEX_FIELDS = ["video", "part", "label", "original", "status", "error", "frames", "width", "height", "fps",
                "rotation", "sampled_frames", "decoder", "decode_s", "json"]


@dataclass
class ExtractConfig:
    """Options of the extraction job (the CLI maps its flags onto these)."""

    inputs: list = field(default_factory=lambda: [DEMO_DIR])
    out: str = "extract_out"
    every: int = 10
    device: str = "cuda" if torch.cuda.is_available() else "cpu"
    decoder: str = "auto"
    workers: int = 1
    shard: Optional[str] = None
    overwrite: bool = False
    progress: bool = True


def parse_shard(shard: Optional[str]) -> tuple[int, int]:
    """``"i/N"`` → (i, N); else the torchrun rank (RANK/WORLD_SIZE); else (0, 1)."""
    if shard:
        try:
            i, n = (int(x) for x in shard.split("/"))
        except ValueError:
            raise ValueError(f"--shard must look like i/N (e.g. 0/4), got {shard!r}") from None
        if not (n >= 1 and 0 <= i < n):
            raise ValueError(f"--shard {shard!r}: need 0 <= i < N")
        return i, n
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    return 0, 1


def video_json_path(out: str, entry: VideoEntry) -> str:
    return os.path.join(out, "videos", entry.part or "_", entry.stem + ".json")


def _write_json_atomic(path: str, obj) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)


def run_extraction(cfg: ExtractConfig) -> dict:
    """Run the job; returns the summary that is also written to ``OUT/summary.json``."""
    if cfg.every < 1:
        raise ValueError(f"every must be >= 1, got {cfg.every}")
    device = torch.device(cfg.device)
    decoder = resolve_decoder(cfg.decoder, device)
    shard_i, shard_n = parse_shard(cfg.shard)
    datasets = from_paths(cfg.inputs)
    entries: list[tuple[Dataset, VideoEntry]] = sorted(
        ((ds, e) for ds in datasets for e in ds.videos), key=lambda de: (de[0].root, de[1].key))
    entries = entries[shard_i::shard_n]
    os.makedirs(cfg.out, exist_ok=True)
    _write_json_atomic(os.path.join(cfg.out, f"config-{shard_i}.json"), {**asdict(cfg), "decoder_resolved": decoder})

    todo = [(ds, e) for ds, e in entries if cfg.overwrite or not os.path.exists(video_json_path(cfg.out, e))]
    skipped = len(entries) - len(todo)
    by_path = {e.path: e for _, e in todo}
    t0 = last = time.perf_counter()
    bar = _progress(len(todo), cfg.progress)
    for path, result in read_videos(list(by_path), Every(cfg.every), device=device, decoder=decoder, workers=cfg.workers):
        entry = by_path[path]
        record = {"video": entry.name, "part": entry.part, "label": entry.label, "original": entry.original,
                  "path": entry.path, "stages_done": ["discover", "decode"], "stages_missing": sorted(MISSING_STAGES)}
        if isinstance(result, VideoDecodeError):
            record.update(status="decode_error", error=result.cause)
        else:
            info = result.info
            record.update(status="ok", error=None, frames=info.num_frames, width=info.width, height=info.height,
                          fps=info.fps, rotation=info.rotation, sampled_frames=len(result), decoder=result.decoder)
            del result
        now = time.perf_counter()
        record["decode_s"], last = round(now - last, 3), now  # per video (overlaps with workers > 1)
        _write_json_atomic(video_json_path(cfg.out, entry), record)
        bar.update(1)
    bar.close()
    elapsed = time.perf_counter() - t0

    rows = [_index_row(cfg.out, e) for _, e in entries]
    for ds in datasets:
        rows += [{"video": m.name, "part": m.part, "label": m.label, "original": m.original, "status": "missing",
                  "error": "listed in metadata.json but not on disk"} for m in ds.missing]
        rows += [{"video": n, "status": "error", "error": f"refused name: {why}"} for n, why in ds.rejected]
    index_path = os.path.join(cfg.out, f"index-{shard_i}.csv" if shard_n > 1 else "index.csv")
    tmp = index_path + ".tmp"
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=INDEX_FIELDS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, index_path)

    statuses: dict = {}
    for r in rows:
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    summary = {
        "out": os.path.abspath(cfg.out), "index": os.path.abspath(index_path), "shard": f"{shard_i}/{shard_n}",
        "device": str(device), "decoder": decoder, "videos": len(entries), "processed": len(todo),
        "skipped_done": skipped, "status_counts": statuses, "elapsed_s": round(elapsed, 3),
        "videos_per_s": round(len(todo) / elapsed, 3) if todo and elapsed > 0 else None,
        "stages_done": ["discover", "decode"], "stages_missing": MISSING_STAGES,
    }
    _write_json_atomic(os.path.join(cfg.out, f"summary-{shard_i}.json" if shard_n > 1 else "summary.json"), summary)
    return summary


def _index_row(out: str, entry: VideoEntry) -> dict:
    path = video_json_path(out, entry)
    with open(path) as f:
        rec = json.load(f)
    rec["json"] = os.path.relpath(path, out)
    return rec


def _progress(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="video", desc="extract", disable=not enabled or total == 0, dynamic_ncols=True)


def build_parser() -> argparse.ArgumentParser:
    d = ExtractConfig()
    ap = argparse.ArgumentParser(prog="python -m dfdc_fast.extract", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("inputs", nargs="*", metavar="VIDEO_OR_DIR",
                    help="videos and/or dataset folders (DFDC parts, folder with metadata.json, plain folder); "
                         "default: the demo clips in the package")
    ap.add_argument("-o", "--out", default=d.out, help="output folder (default: %(default)s)")
    ap.add_argument("--every", type=int, default=d.every, help="detect faces on every n-th frame (default: %(default)s)")
    ap.add_argument("--device", default=d.device, help="torch device (default: %(default)s)")
    ap.add_argument("--decoder", default=d.decoder, choices=DECODERS, help="video decoder (default: %(default)s)")
    ap.add_argument("--workers", type=int, default=d.workers, help="videos decoded at once (default: %(default)s)")
    ap.add_argument("--shard", default=None, help="process shard i of N, as i/N (default: torchrun rank, else 0/1)")
    ap.add_argument("--overwrite", action="store_true", help="redo videos that are already done")
    ap.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bar")
    return ap


def main(argv: Optional[list] = None) -> int:
    args = build_parser().parse_args(argv)
    cfg = ExtractConfig(**{**vars(args), "inputs": args.inputs or [DEMO_DIR]})
    if not args.inputs:
        print(f"No input given: extracting the demo clips in {DEMO_DIR}", file=sys.stderr)
    print(f"Output folder: {os.path.abspath(cfg.out)}", file=sys.stderr)
    summary = run_extraction(cfg)
    print(json.dumps({k: v for k, v in summary.items() if k != "stages_missing"}, indent=1))
    print("Not built yet, so no face clips or crops were written: "
          + "; ".join(f"{k}: {v}" for k, v in MISSING_STAGES.items()), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
