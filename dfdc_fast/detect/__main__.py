"""``python -m dfdc_fast.detect VIDEO_OR_DIR... --every 10 --out detections.jsonl``

One JSON line per sampled frame: video, frame index, boxes (x0, y0, x1, y1 in pixels of
the full frame), scores and 5-point landmarks (x, y). A video that cannot be decoded
gets one line with ``status: decode_error`` and its error, and the exit code is 1.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

from dfdc_fast import checks
from dfdc_fast.cli import JobParser, add_common_arguments, first, run
from dfdc_fast.data import from_paths
from dfdc_fast.detect.mtcnn import MTCNN, PRESETS
from dfdc_fast.detect.videos import detect_videos
from dfdc_fast.io import DECODERS, Every, check_decoder
from dfdc_fast.runtime import tune_host_allocator


def frame_records(path: str, detections) -> list[dict]:
    """The JSON lines of one video's detections (values rounded for readability)."""
    d = detections
    boxes, scores, counts = d.boxes.cpu(), d.scores.cpu(), d.counts.cpu()
    landmarks = d.landmarks.cpu() if d.landmarks is not None else None
    out = []
    for f, index in enumerate(d.frame_indices.tolist()):
        n = int(counts[f])
        out.append({
            "video": path, "frame": index, "status": "ok",
            "boxes": [[round(v, 2) for v in b] for b in boxes[f, :n].tolist()],
            "scores": [round(s, 5) for s in scores[f, :n].tolist()],
            "landmarks": [[[round(v, 2) for v in p] for p in lm] for lm in landmarks[f, :n].tolist()]
            if landmarks is not None else None,
        })
    return out


def build_parser() -> argparse.ArgumentParser:
    ap = JobParser(prog="python -m dfdc_fast.detect", description=__doc__.replace("``", ""))
    ap.add_argument("inputs", nargs="+", help="video files or folders (searched for videos, DFDC layouts understood)")
    ap.add_argument("--follow-links", action="store_true", help="accept symbolic links that point out of a dataset folder (a folder of links to try a subset): each is resolved once and its target recorded as the video's path")
    ap.add_argument("--every", type=int, default=10, help="detect on every n-th frame (default: %(default)s)")
    ap.add_argument("--out", default="-", help="JSON-lines output file, - for stdout (default: %(default)s)")
    ap.add_argument("--preset", default="medics_export", choices=sorted(PRESETS),
                    help="detector settings of a seed system (default: %(default)s: thresholds 0.6/0.7/0.7 at 0.5x)")
    ap.add_argument("--thresholds", type=float, nargs=3, metavar=("P", "R", "O"), help="override the preset's P-, R- and O-Net thresholds (default: the preset's)")
    size = ap.add_mutually_exclusive_group()
    size.add_argument("--scale", type=float, help="resize frames by this factor before detecting (default: the preset's)")
    size.add_argument("--long-side", type=int,
                      help="resize frames so the longer side has this many pixels (default: the preset's)")
    size.add_argument("--full-resolution", action="store_true", help="detect at full resolution")
    ap.add_argument("--max-faces", type=int, help="keep at most this many faces per frame (default: the preset's)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                    help="cpu or cuda[:i] (default: cuda when a GPU is usable, else cpu; here %(default)s)")
    ap.add_argument("--decoder", default="auto", choices=DECODERS, help="video decoder (default: %(default)s)")
    ap.add_argument("--workers", type=int, default=1, help="videos decoded at once (default: %(default)s)")
    ap.add_argument("--videos-per-batch", type=int, default=None,
                    help="videos detected together (default: 8 on a GPU, 1 on a CPU, so progress shows per video)")
    add_common_arguments(ap)
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    tune_host_allocator()
    return run("detect", lambda: _main(args), debug=args.debug)


def _main(args: argparse.Namespace) -> int:
    from dfdc_fast.runtime import check_device

    checks.integer("every", args.every, 1)
    checks.integer("workers", args.workers, 1)
    checks.integer("videos_per_batch", args.videos_per_batch, 1, none_ok=True)
    checks.integer("max_faces", args.max_faces, 1, none_ok=True)
    checks.integer("long_side", args.long_side, 1, none_ok=True)
    checks.number("scale", args.scale, 0, none_ok=True)
    for t in args.thresholds or ():
        if not 0 <= t <= 1:
            raise ValueError(f"--thresholds must be between 0 and 1, got {args.thresholds}")
    check_decoder(args.decoder, check_device(args.device))
    for p in args.inputs:
        if not os.path.exists(p):
            raise FileNotFoundError(f"input {p} does not exist")
    overrides = {}
    if args.thresholds:
        overrides["thresholds"] = tuple(args.thresholds)
    if args.max_faces is not None:
        overrides["max_faces"] = args.max_faces
    if args.scale is not None or args.long_side is not None or args.full_resolution:
        overrides.update(scale=args.scale, long_side=args.long_side, size_rule=None)
    detector = MTCNN(args.device, args.preset, **overrides)

    paths = first([p for ds in from_paths(args.inputs, follow_links=args.follow_links) for p in [e.path for e in ds.videos] + list(ds.unlisted)],
                  args.limit)
    if not paths:
        raise FileNotFoundError("no videos found in " + " ".join(args.inputs))
    per_batch = args.videos_per_batch or (8 if detector.device.type == "cuda" else 1)
    out = sys.stdout if args.out == "-" else open(args.out, "w")
    from tqdm import tqdm

    bar = tqdm(total=len(paths), unit="video", disable=not args.progress, file=sys.stderr, dynamic_ncols=True)
    failed, frames, t0 = 0, 0, time.perf_counter()
    try:
        for path, result in detect_videos(paths, detector, Every(args.every), decoder=args.decoder,
                                          workers=args.workers, videos_per_batch=per_batch):
            if isinstance(result, Exception):
                failed += 1
                lines = [{"video": path, "frame": None, "status": "decode_error", "error": str(result)}]
            else:
                lines = frame_records(path, result[1])
                frames += len(lines)
            for rec in lines:
                out.write(json.dumps(rec) + "\n")
            bar.update(1)
            bar.set_postfix(frames_per_s=f"{frames / (time.perf_counter() - t0):.1f}")
    finally:
        bar.close()
        if out is not sys.stdout:
            out.close()
    print(f"{len(paths)} videos, {frames} frames, {failed} failed, {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
