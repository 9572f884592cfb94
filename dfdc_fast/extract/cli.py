"""The command line of ``python -m dfdc_fast.extract``: flags onto :class:`ExtractConfig`,
the summary printed, an exit code (the job itself is :mod:`dfdc_fast.extract.job`).

Exit codes: 0 every video was read (some may have no face); 1 some videos failed (their
statuses are in the index); 2 the run was refused (bad arguments, another run on the same
folder, a folder another job made, settings that differ from the folder's); 3 the run
stopped early (disk full or read-only, I/O error), with what was done intact: rerun the
same command to resume; 130 interrupted (Ctrl-C), 143 terminated (SIGTERM), as resumable.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Optional

from dfdc_fast.cli import EXIT_FAILED, EXIT_OK, JobParser, add_common_arguments, run
from dfdc_fast.detect import PRESETS
from dfdc_fast.extract.config import DEMO_DIR, EXECUTORS, RECIPE_DEFAULTS, RECIPES, REUSE, ExtractConfig
from dfdc_fast.extract.run import run_extraction
from dfdc_fast.io import DECODERS
from dfdc_fast.runtime import tune_host_allocator

FAILED = ("decode_error", "missing", "error")
EXIT_CODES = """
Exit codes: 0 every video was read (some may have no face); 1 some videos failed (their
statuses are in the index); 2 the run was refused (bad arguments, another run on the same
folder, settings that differ from the folder's); 3 the run stopped early (disk full or I/O
error), with what was done intact: rerun the same command to resume; 130 interrupted.
"""


def build_parser() -> argparse.ArgumentParser:
    d = ExtractConfig()
    from dfdc_fast import extract

    ap = JobParser(prog="python -m dfdc_fast.extract", description=extract.__doc__.replace("``", "") + EXIT_CODES)
    ap.add_argument("inputs", nargs="*", metavar="VIDEO_OR_DIR",
                    help="videos and/or dataset folders (DFDC parts, folder with metadata.json, plain folder); "
                         "default: the demo clips in the package")
    ap.add_argument("-o", "--out", default=d.out, help="output folder (default: %(default)s)")

    def rec(name):
        return "/".join(str(RECIPE_DEFAULTS[r][name]) for r in RECIPES)

    ap.add_argument("--recipe", default=d.recipe, choices=RECIPES,
                    help="what to prepare, for which seed's training: medics (face clips + crops), selim (PNG crops of "
                         "every 10th frame with landmarks, SSIM diffs of fakes, folds: crops.csv) or ntech (aligned "
                         "REAL/FAKE pair clips: pairs.csv); it sets the defaults marked medics/selim/ntech below "
                         "(default: %(default)s)")
    g = ap.add_argument_group("detection and tracking")
    g.add_argument("--every", type=int, default=None, help=f"detect faces on every n-th frame (default: {rec('every')})")
    g.add_argument("--detector", default=None, choices=sorted(PRESETS),
                   help=f"MTCNN settings (default: {rec('detector')})")
    g.add_argument("--track-method", default=None, choices=("mask", "iou"),
                   help=f"mask: 3D connected components (the Medics); iou: IoU tracker (default: {rec('track_method')})")
    g.add_argument("--chunk-size", type=int, default=None,
                   help=f"frames per clip chunk, each with its own box; 0 for whole tracks (default: {rec('chunk_size')})")
    g = ap.add_argument_group("outputs")
    g.add_argument("--clip-size", type=int, default=None,
                   help=f"side of the square face clips (medics) (default: {rec('clip_size')})")
    g.add_argument("--min-clip-frames", type=int, default=d.min_clip_frames,
                   help="shorter clips get status too_short (default: %(default)s)")
    g.add_argument("--clip-crf", type=int, default=d.clip_crf, help="x264 quality of the clips (default: %(default)s)")
    g.add_argument("--clip-keyint", type=int, default=d.clip_keyint,
                   help="frames between keyframes in the clips, so training decodes only near its window (default: %(default)s)")
    g.add_argument("--crops-per-video", type=int, default=None,
                   help=f"2D crops at this many evenly spaced frames, 0 for none (default: {rec('crops_per_video')})")
    g.add_argument("--crop-every", type=int, default=d.crop_every,
                   help="selim: crops at frames that are multiples of this (default: --every's value)")
    g.add_argument("--crop-margin", type=float, default=None,
                   help="margin around 2D crops, as a fraction of the box (default: 1/3)")
    g.add_argument("--crop-format", default=None, choices=("jpg", "png"), help=f"image format of the 2D crops (default: {rec('crop_format')})")
    g.add_argument("--reuse-original", default=None, choices=REUSE,
                   help=f"fakes take their original's boxes for: none, 2d crops, or all outputs "
                        f"(default: {rec('reuse_original')})")
    g.add_argument("--pair-length", type=int, default=d.pair_length, help="ntech: frames per pair clip (default: %(default)s)")
    g.add_argument("--pair-box-mult", type=float, default=d.pair_box_mult,
                   help="ntech: pair clip box = this times the face box (default: %(default)s)")
    g.add_argument("--contact-sheet", type=int, default=d.contact_sheet,
                   help="videos shown in contact_sheet.png, 0 for none (default: %(default)s)")
    g = ap.add_argument_group("execution")
    g.add_argument("--device", default=d.device,
                   help="cpu, cuda or cuda:N; under torchrun cuda means cuda:LOCAL_RANK (default: cuda when a GPU "
                        "is usable, else cpu; here %(default)s)")
    g.add_argument("--decoder", default=d.decoder, choices=DECODERS, help="video decoder (default: %(default)s)")
    g.add_argument("--workers", type=int, default=d.workers,
                   help="worker processes running decode/detect/track/cut (default: one per NVDEC engine on a GPU, "
                        "one per core on a CPU of more than 2 cores, none on 2 or fewer; 0: in this process)")
    g.add_argument("--threads", type=int, default=d.threads,
                   help="torch and decoder threads per worker (default: cores / workers)")
    g.add_argument("--encoders", type=int, default=d.encoders,
                   help="processes encoding the clips (default: the cores the workers leave, at least 2; 0: inline)")
    g.add_argument("--video-timeout", type=float, default=d.video_timeout,
                   help="seconds a video may take before its worker is replaced and it gets status error (default: %(default)s)")
    g.add_argument("--max-pending", type=int, default=d.max_pending,
                   help="videos waiting for the encoders before decoding pauses (default: %(default)s)")
    g.add_argument("--max-frame-pixels", type=int, default=d.max_frame_pixels,
                   help="refuse (decode_error) videos whose frames have more pixels (default: %(default)s, 4096x4096)")
    g.add_argument("--max-frames", type=int, default=d.max_frames,
                   help="refuse (decode_error) videos with more frames to decode (default: %(default)s, an hour at 30 fps)")
    g.add_argument("--segment-frames", type=int, default=d.segment_frames,
                   help="decode and work on a longer video this many frames at a time, so it needs the memory of "
                        "one segment; a multiple of --chunk-size and --every (default: %(default)s)")
    g.add_argument("--shard", default=None, help="process shard i of N, as i/N (default: torchrun rank, else 0/1)")
    g.add_argument("--merge", action="store_true",
                   help="only merge the records of finished --shard runs into one index.csv, crops.csv, pairs.csv and "
                        "summary.json (the last shard to finish does it too)")
    g.add_argument("--executor", default=d.executor, choices=EXECUTORS,
                   help="local: this machine (with --shard/torchrun for more); ray: actors on a Ray cluster, one per "
                        "GPU, with a shared queue (needs the extra: pip install \"dfdc_fast[ray]\") (default: %(default)s)")
    g.add_argument("--ray-address", default=None,
                   help="Ray cluster to join: auto or HOST:PORT (default: the one `ray start` runs on this machine, "
                        "else a private one on 127.0.0.1)")
    g.add_argument("--ray-actors", type=int, default=None,
                   help="Ray actors (default: one per GPU of the cluster; one per node on CPU-only clusters)")
    g.add_argument("--overwrite", action="store_true", help="redo videos that are already done")
    g.add_argument("--follow-links", action="store_true", help="accept symbolic links that point out of a dataset folder (a folder of links to try a subset): each is resolved once and its target recorded as the video's path")
    g.add_argument("--no-progress", dest="progress", action="store_false",
                   help="hide the progress bar (default: a bar on a terminal)")
    return ap


def main(argv: Optional[list] = None) -> int:
    parser = build_parser()
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    tune_host_allocator()
    return run("extract", lambda: _main(args), debug=args.debug)


def _main(args: argparse.Namespace) -> int:
    values = {k: v for k, v in vars(args).items() if k != "debug"}
    for p in args.inputs:  # refused before the output folder is made
        if not os.path.exists(p):
            raise FileNotFoundError(f"input {p} does not exist")
    cfg = ExtractConfig(**{**values, "inputs": args.inputs or [DEMO_DIR]})  # chunk_size 0: whole tracks
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
