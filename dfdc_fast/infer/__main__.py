"""``python -m dfdc_fast.infer VIDEOS... -c CHECKPOINT...``: score videos into a DFDC submission.csv.

The default recipe is the Medics' (5th in DFDC): the first 100 frames, MTCNN at a 480-px
long side on every 10th, up to 5 faces, 3D clips with flip TTA and 2D crops, mean over faces,
mean over models, clipped to [0.001, 0.999]. ``--aggregator selim|ntech`` picks the 1st's
confident strategy or the 3rd's sharpening. With ``--time-budget`` the run degrades (fewer
frames, then fewer models) rather than miss rows; every video always gets a row.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys

from dfdc_fast.infer.budget import parse_duration


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m dfdc_fast.infer", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("inputs", nargs="+", help="folders of videos (DFDC test layout or any) or video files")
    ap.add_argument("-c", "--checkpoints", nargs="+", required=True, help="dfdc_fast checkpoints (train's epoch_*.pth)")
    ap.add_argument("-o", "--out", default="infer_out", help="output folder (default: %(default)s)")
    ap.add_argument("--aggregator", default="medics", choices=["medics", "selim", "ntech"],
                    help="per-video rule (default: %(default)s)")
    ap.add_argument("--frames", type=int, default=100, help="first N frames per video (default: %(default)s)")
    ap.add_argument("--detect-every", type=int, default=10, help="detect on every n-th frame (default: %(default)s)")
    ap.add_argument("--max-faces", type=int, default=5, help="faces per video (default: %(default)s)")
    ap.add_argument("--no-tta", dest="tta", action="store_false", help="skip the horizontal-flip TTA of 3D models")
    ap.add_argument("--time-budget", type=parse_duration, default=None,
                    help="whole-run limit, e.g. 8.5h, 30m, 600 (seconds); degrades rather than miss rows")
    ap.add_argument("--device", default=None, help="cuda, cuda:1 or cpu (default: cuda if available)")
    ap.add_argument("--decoder", default="auto", choices=["auto", "nvdec", "dali", "pyav"])
    ap.add_argument("--workers", type=int, default=None,
                    help="engine worker processes decoding and cutting faces (default: one per NVDEC engine on a "
                         "GPU, cores - 1 on a CPU; 0: in this process)")
    ap.add_argument("--videos-per-batch", type=int, default=16, help="videos whose faces are scored together (default: %(default)s)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the models, with fixed batch shapes")
    ap.add_argument("--amp", default="auto", choices=["auto", "bf16", "fp16", "none"])
    ap.add_argument("--no-progress", dest="progress", action="store_false")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    from dfdc_fast.infer.pipeline import InferConfig, run_inference
    from dfdc_fast.runtime import tune_host_allocator

    tune_host_allocator()
    config = InferConfig(inputs=args.inputs, checkpoints=args.checkpoints, out=args.out, aggregator=args.aggregator,
                         frames=args.frames, detect_every=args.detect_every, max_faces=args.max_faces, tta=args.tta,
                         time_budget=args.time_budget, device=args.device, decoder=args.decoder, workers=args.workers,
                         videos_per_batch=args.videos_per_batch, amp=args.amp, compile=args.compile,
                         progress=args.progress)
    summary = run_inference(config)
    print(json.dumps({k: summary[k] for k in ("videos", "statuses", "fallback_0.5", "seconds", "videos_per_s",
                                              "submission")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
