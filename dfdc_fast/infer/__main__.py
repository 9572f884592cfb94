"""``python -m dfdc_fast.infer VIDEOS... CHECKPOINTS... -o OUT``: score videos into a DFDC submission.csv.

Inputs are folders of videos (DFDC test layout or any), video files, and checkpoint files
(``.pth``/``.pt``, as training writes them), with the options, in any order;
``-w/--weights FILE...`` names checkpoints explicitly, whatever their suffix (one or more
files up to the next option; repeatable). ``-c/--config FILE`` reads options from a
YAML file (keys as the flags, with underscores); flags override it.

The default recipe is the Medics' (5th in DFDC): the first 100 frames, MTCNN at a 480-px
long side on every 10th, up to 5 faces, 3D clips with flip TTA and 2D crops, mean over faces,
mean over models, clipped to [0.001, 0.999]. ``--aggregator selim|ntech`` picks the 1st's
confident strategy or the 3rd's sharpening. With ``--time-budget`` the run degrades (fewer
frames, then fewer models) rather than miss rows; every video always gets a row.

Exit codes: 0 every video scored (no-face videos included, at 0.5); 1 some videos could not
be read (their rows are 0.5 and their status is in videos/*.json); 2 refused (bad arguments
or checkpoints, the folder in use or made by another job); 3 stopped (disk full or read-only); 130
interrupted, 143 terminated. A run that could read no video never replaces an earlier
submission.csv (rc 1).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from dfdc_fast.cli import EXIT_FAILED, EXIT_OK, JobParser, add_common_arguments, run
from dfdc_fast.errors import ConfigError
from dfdc_fast.infer.budget import parse_duration
from dfdc_fast.recipes import RECIPES

CHECKPOINT_SUFFIXES = (".pth", ".pt", ".ckpt")
FAILED = ("decode_error", "error", "missing")


def build_parser() -> argparse.ArgumentParser:
    ap = JobParser(prog="python -m dfdc_fast.infer", description=__doc__.replace("``", ""))
    ap.add_argument("paths", nargs="*", metavar="VIDEOS_OR_CHECKPOINTS",
                    help="video folders or files, and checkpoint files (.pth/.pt), in any order")
    ap.add_argument("-w", "--weights", action="extend", nargs="+", default=[], metavar="FILE",
                    help="checkpoints, whatever their suffix (repeatable; default: the .pth/.pt/.ckpt arguments)")
    ap.add_argument("-c", "--config", metavar="YAML", help="options from a YAML file; flags override it (default: none)")
    ap.add_argument("-o", "--out", default=None, help="output folder (default: infer_out)")
    ap.add_argument("--recipe", default=None, choices=sorted(RECIPES),
                    help="whose inference: medics (first 100 frames, tracks, 3D clips + 2D crops), selim (32 frames "
                         "evenly spaced, every face letterboxed, confident strategy) or ntech (15 fps, IoU tracks, "
                         "7-frame windows, sharpening); it sets the defaults of the options below (default: medics)")
    ap.add_argument("--aggregator", default=None, choices=sorted(RECIPES),
                    help="per-video rule (default: the recipe's: medics, selim or ntech)")
    ap.add_argument("--frames", type=int, default=None, help="first N frames per video (default: medics 100, selim 32 evenly spaced, ntech 0: all)")
    ap.add_argument("--detect-every", type=int, default=None, help="detect on every n-th frame (default: medics 10, selim 1, ntech 3 of its 15 fps)")
    ap.add_argument("--max-faces", type=int, default=None, help="faces per video (default: medics 5, selim 127, ntech 5)")
    ap.add_argument("--no-tta", dest="tta", action="store_false", default=None,
                    help="skip the horizontal-flip TTA of 3D models (default: TTA on)")
    ap.add_argument("--time-budget", type=parse_duration, default=None,
                    help="whole-run limit, e.g. 8.5h, 30m, 600 (seconds); degrades rather than miss rows (default: none)")
    ap.add_argument("--device", default=None, help="cuda, cuda:1 or cpu (default: cuda if available)")
    ap.add_argument("--decoder", default=None, choices=["auto", "nvdec", "dali", "pyav"],
                    help="video decoder (default: auto: nvdec on a GPU when it works, else pyav)")
    ap.add_argument("--workers", type=int, default=None,
                    help="engine worker processes decoding and cutting faces (default: one per NVDEC engine on a "
                         "GPU; on a CPU none: faces are made in this process, between model calls)")
    ap.add_argument("--videos-per-batch", type=int, default=None, help="videos whose faces are scored together (default: 16)")
    ap.add_argument("--amp", default=None, choices=["auto", "bf16", "fp16", "none"],
                    help="autocast dtype (default: auto: bf16 on GPUs that have it, else none)")
    ap.add_argument("--follow-links", action="store_true", default=None, help="accept symbolic links that point out of a dataset folder (a folder of links to try a subset): each is resolved once and its target recorded as the video's path")
    ap.add_argument("--compile", action="store_true", default=None, help="torch.compile the models, with fixed batch shapes")
    ap.add_argument("--no-progress", dest="progress", action="store_false", default=None,
                    help="no progress bars (default: bars on a terminal)")
    ap.add_argument("--executor", default="local", choices=["local", "ray"],
                    help="local: this machine; ray: one actor per GPU of a Ray cluster, one submission.csv "
                         '(needs the extra: pip install "dfdc_fast[ray]") (default: %(default)s)')
    ap.add_argument("--ray-address", default=None,
                    help="Ray cluster to join: auto or HOST:PORT (default: the one `ray start` runs on this machine, "
                         "else a private one on 127.0.0.1)")
    ap.add_argument("--ray-actors", type=int, default=None,
                    help="Ray actors (default: one per GPU of the cluster; one per node on CPU-only clusters)")
    add_common_arguments(ap)
    return ap


def config_from_args(args: argparse.Namespace):
    from dfdc_fast.infer.pipeline import InferConfig

    values: dict = {}
    if args.config:
        values = _read_options(args.config)
    paths = [_run_best(p) for p in args.paths]
    inputs = [p for p in paths if not p.lower().endswith(CHECKPOINT_SUFFIXES)]
    weights = [p for p in paths if p.lower().endswith(CHECKPOINT_SUFFIXES)] + [_run_best(p) for p in args.weights]
    for p in weights:
        if os.path.isdir(p):
            raise ConfigError(f"-w {p}: a folder, not a checkpoint nor a training run; -w takes the files up to the "
                              "next option, so name videos before -w or after another option")
    if inputs:
        values["inputs"] = inputs
    if weights:
        values["checkpoints"] = weights
    for key in ("out", "recipe", "aggregator", "frames", "detect_every", "max_faces", "tta", "time_budget", "device", "decoder",
                "workers", "videos_per_batch", "amp", "compile", "progress", "limit", "follow_links"):
        if getattr(args, key, None) is not None:
            values[key] = getattr(args, key)
    return InferConfig.from_dict(values)


def _run_best(path: str) -> str:
    """A training run folder stands for its checkpoints/best.pth (said on stderr); any other path is itself."""
    from dfdc_fast.models.checkpoint import run_checkpoint

    best = run_checkpoint(path) if os.path.isdir(path) else None
    if best is None:
        return path
    print(f"infer: {path} is a training run: scoring with its {best}", file=sys.stderr)
    return best


def _read_options(path: str) -> dict:
    """A YAML file of options; a checkpoint given to -c (train's -c is a config too) is named as such."""
    import yaml

    if path.lower().endswith(CHECKPOINT_SUFFIXES):
        raise ConfigError(f"-c {path}: -c is a YAML file of options; give checkpoints as arguments or with -w FILE")
    try:
        with open(path, encoding="utf-8") as f:
            values = yaml.safe_load(f) or {}
    except (UnicodeDecodeError, yaml.YAMLError) as e:
        raise ConfigError(f"-c {path}: not a YAML file of options ({type(e).__name__}); "
                          "checkpoints go as arguments or with -w FILE") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping of options")
    return values


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from dfdc_fast.runtime import tune_host_allocator

    tune_host_allocator()
    return run("infer", lambda: _main(args), debug=args.debug)


def _main(args: argparse.Namespace) -> int:
    from dfdc_fast.infer.pipeline import run_inference

    if args.executor == "ray":
        from dfdc_fast.cluster import require_ray

        require_ray()  # before anything is read: without the extra, one line naming it
    config = config_from_args(args)
    if not config.inputs:
        raise ConfigError("no videos given: name folders or files of videos")
    if not config.checkpoints:
        raise ConfigError("no checkpoints given: name .pth files (or -w FILE)")
    for p in config.inputs + config.checkpoints:
        if not os.path.exists(p):
            raise FileNotFoundError(f"{p} does not exist")
    if args.executor == "ray":
        from dfdc_fast.infer.on_ray import run_inference_on_ray  # optional backend: the dfdc_fast[ray] extra

        summary = run_inference_on_ray(config, address=args.ray_address, actors=args.ray_actors)
    else:
        summary = run_inference(config)
    print(json.dumps({k: summary[k] for k in ("videos", "statuses", "fallback_0.5", "seconds", "videos_per_s",
                                              "submission")}, indent=1))
    if summary.get("submission_kept"):
        print(f"infer: no video could be read; the earlier {summary['submission']} is kept", file=sys.stderr)
        return EXIT_FAILED
    failed = sum(n for s, n in summary["statuses"].items() if s in FAILED)
    if failed:
        print(f"infer: {failed} of {summary['videos']} videos could not be read (0.5 in the submission); "
              f"see {os.path.join(config.out, 'videos')}", file=sys.stderr)
    return EXIT_FAILED if failed else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
