"""The command line of ``python -m dfdc_fast.extract`` (a thin layer over :mod:`.job`).

Exit codes: 0 every video was read (some may have no face); 1 some videos failed (their
statuses are in the index); 2 the run was refused (bad arguments, another run on the same
folder, settings that differ from the folder's); 3 the run stopped early (disk full or I/O
error), with what was done intact: rerun the same command to resume.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Optional

from dfdc_fast.cli import EXIT_FAILED, EXIT_OK, add_common_arguments, run
from dfdc_fast.detect import PRESETS
from dfdc_fast.extract.config import DEMO_DIR, REUSE, ExtractConfig
from dfdc_fast.extract.job import run_extraction
from dfdc_fast.io import DECODERS
from dfdc_fast.runtime import tune_host_allocator

FAILED = ("decode_error", "missing", "error")


def build_parser() -> argparse.ArgumentParser:
    d = ExtractConfig()
    from dfdc_fast import extract

    ap = argparse.ArgumentParser(prog="python -m dfdc_fast.extract", description=extract.__doc__ + "\n" + __doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("inputs", nargs="*", metavar="VIDEO_OR_DIR",
                    help="videos and/or dataset folders (DFDC parts, folder with metadata.json, plain folder); "
                         "default: the demo clips in the package")
    ap.add_argument("-o", "--out", default=d.out, help="output folder (default: %(default)s)")
    g = ap.add_argument_group("detection and tracking")
    g.add_argument("--every", type=int, default=d.every, help="detect faces on every n-th frame (default: %(default)s)")
    g.add_argument("--detector", default=d.detector, choices=sorted(PRESETS),
                   help="MTCNN settings (default: %(default)s: 0.5x, thresholds 0.6/0.7/0.7)")
    g.add_argument("--track-method", default=d.track_method, choices=("mask", "iou"),
                   help="mask: 3D connected components (the Medics); iou: IoU tracker (default: %(default)s)")
    g.add_argument("--chunk-size", type=int, default=d.chunk_size,
                   help="frames per clip chunk, each with its own box; 0 for whole tracks (default: %(default)s)")
    g = ap.add_argument_group("outputs")
    g.add_argument("--clip-size", type=int, default=d.clip_size, help="side of the square face clips (default: %(default)s)")
    g.add_argument("--min-clip-frames", type=int, default=d.min_clip_frames,
                   help="shorter clips get status too_short (default: %(default)s)")
    g.add_argument("--clip-crf", type=int, default=d.clip_crf, help="x264 quality of the clips (default: %(default)s)")
    g.add_argument("--clip-keyint", type=int, default=d.clip_keyint,
                   help="frames between keyframes in the clips, so training decodes only near its window (default: %(default)s)")
    g.add_argument("--crops-per-video", type=int, default=d.crops_per_video,
                   help="2D crops at this many evenly spaced frames, 0 for none (default: %(default)s)")
    g.add_argument("--crop-margin", type=float, default=d.crop_margin,
                   help="margin around 2D crops, as a fraction of the box (default: 1/3)")
    g.add_argument("--crop-format", default=d.crop_format, choices=("jpg", "png"), help="(default: %(default)s)")
    g.add_argument("--reuse-original", default=d.reuse_original, choices=REUSE,
                   help="fakes take their original's boxes for: none, 2d crops, or all outputs (default: %(default)s)")
    g.add_argument("--contact-sheet", type=int, default=d.contact_sheet,
                   help="videos shown in contact_sheet.png, 0 for none (default: %(default)s)")
    g = ap.add_argument_group("execution")
    g.add_argument("--device", default=d.device, help="torch device; under torchrun cuda means cuda:LOCAL_RANK (default: %(default)s)")
    g.add_argument("--decoder", default=d.decoder, choices=DECODERS, help="video decoder (default: %(default)s)")
    g.add_argument("--workers", type=int, default=d.workers,
                   help="worker processes running decode/detect/track/cut (default: one per NVDEC engine on a GPU, "
                        "one per core on a CPU; 0: in this process)")
    g.add_argument("--threads", type=int, default=d.threads, help="torch and decoder threads per worker (default: cores / workers)")
    g.add_argument("--encoders", type=int, default=d.encoders,
                   help="processes encoding the clips (default: the cores the workers leave, at least 2; 0: inline)")
    g.add_argument("--video-timeout", type=float, default=d.video_timeout,
                   help="seconds a video may take before its worker is replaced and it gets status error (default: %(default)s)")
    g.add_argument("--max-pending", type=int, default=d.max_pending,
                   help="videos waiting for the encoders before decoding pauses (default: %(default)s)")
    g.add_argument("--shard", default=None, help="process shard i of N, as i/N (default: torchrun rank, else 0/1)")
    g.add_argument("--overwrite", action="store_true", help="redo videos that are already done")
    g.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bar")
    return ap


def main(argv: Optional[list] = None) -> int:
    parser = build_parser()
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    tune_host_allocator()
    return run("extract", lambda: _main(args), debug=args.debug)


def _main(args: argparse.Namespace) -> int:
    values = {k: v for k, v in vars(args).items() if k != "debug"}
    values["chunk_size"] = values["chunk_size"] or None
    cfg = ExtractConfig(**{**values, "inputs": args.inputs or [DEMO_DIR]})
    if not args.inputs:
        print(f"No input given: extracting the demo clips in {DEMO_DIR}", file=sys.stderr)
    print(f"Output folder: {os.path.abspath(cfg.out)}", file=sys.stderr)
    summary = run_extraction(cfg)
    print(json.dumps(summary, indent=1))
    failed = sum(n for s, n in summary["status_counts"].items() if s in FAILED)
    if failed:
        print(f"extract: {failed} of {summary['videos']} videos failed; their status and error are in "
              f"{summary['index']}", file=sys.stderr)
    return EXIT_FAILED if failed else EXIT_OK
