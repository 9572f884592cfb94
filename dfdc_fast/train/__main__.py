"""``python -m dfdc_fast.train -c CONFIG``: train one detector on extracted face clips.

Configs shipped with the package (``--list-configs``) reproduce the seed models' recipes.
Every field can be set: the common ones by a flag, any one (nested too) as ``KEY=VALUE``
after the options, e.g. ``optimizer=sgd weight_decay=5e-4 augment.hflip=0.3``; values are
read as YAML and typed by the config, unknown keys refused. The resolved config is printed
and saved as ``OUT/config.yaml``. Under ``torchrun`` each process trains on its share
of every epoch (DDP). Re-running the same command resumes from the last checkpoint;
raising ``--epochs`` extends a finished run, and any other changed setting is refused
(``--overwrite`` starts over, ``--resume-from FILE`` starts a new run from its weights).
"""
from __future__ import annotations

import argparse
import json
import sys

from dfdc_fast.cli import add_common_arguments, run
from dfdc_fast.train.config import TrainConfig, config_table, load_config

#: flags that set a config field of the same name (``--overwrite`` sets resume false)
FIELDS = ["data", "val_parts", "val_fraction", "loader", "workers", "prefetch", "frames", "input_size", "model",
          "pretrained", "resume_from", "epochs", "batch_size", "accumulate", "lr", "amp", "compile", "seed", "out",
          "max_steps_per_epoch", "log_every", "checkpoint_keep", "resume", "progress"]


def _defaults(argv) -> tuple[dict, str]:
    """The values ``--help`` shows as defaults: the ``-c`` config's, else TrainConfig's."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("-c", "--config")
    known, _ = pre.parse_known_args(argv)
    if known.config:
        try:
            return load_config(known.config).to_dict(), f"config {known.config}"
        except (ValueError, OSError):
            pass  # the real parse reports it
    return TrainConfig().to_dict(), "TrainConfig"


def parse_args(argv=None) -> argparse.Namespace:
    argv = sys.argv[1:] if argv is None else list(argv)
    defaults, source = _defaults(argv)

    def d(key: str, when_none: str = "the model's") -> str:
        value = defaults.get(key)
        shown = when_none if value is None else ("on" if value is True else "off" if value is False else value)
        return f" (default: {shown})"

    ap = argparse.ArgumentParser(prog="python -m dfdc_fast.train", description=__doc__ + f"\nDefaults shown: {source}'s.",
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-c", "--config", help="a shipped config name (see --list-configs) or a YAML file (default: none, "
                                           "TrainConfig's defaults)")
    ap.add_argument("--list-configs", action="store_true", help="print the shipped configs as a table and exit")
    ap.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                    help="set any config field, nested ones by dotted keys (augment.hflip=0.3); YAML values")
    g = ap.add_argument_group("data")
    g.add_argument("--data", help="extraction output folder holding index.csv" + d("data"))
    g.add_argument("--val-parts", type=lambda s: [int(x) for x in s.split(",") if x],
                   help="DFDC parts held out, e.g. 45,46,47,48,49" + d("val_parts"))
    g.add_argument("--val-fraction", type=float,
                   help="share of original videos held out when no parts are given" + d("val_fraction"))
    g.add_argument("--loader", choices=["auto", "pyav", "nvdec", "dali"], help="clip decoding" + d("loader"))
    g.add_argument("--workers", type=int,
                   help="decode workers: DataLoader processes (pyav), decoder processes with one NVDEC session each "
                        "(nvdec), DALI threads (dali)" + d("workers"))
    g.add_argument("--prefetch", type=int, help="batches decoded ahead of the training step" + d("prefetch"))
    g.add_argument("--frames", type=int, help="frames per clip" + d("frames"))
    g.add_argument("--input-size", type=int, help="input side in pixels" + d("input_size"))
    g = ap.add_argument_group("model and optimisation")
    g.add_argument("--model", help="registered model name (dfdc_fast.models.list_models())" + d("model"))
    g.add_argument("--pretrained", help="local weights file to start from (head re-initialised)"
                   + d("pretrained", "none, random init"))
    g.add_argument("--resume-from", metavar="FILE",
                   help="start a new run from a checkpoint's weights (head too), with a fresh optimiser and schedule"
                        + d("resume_from", "none"))
    g.add_argument("--epochs", type=int, help="raising it on a finished run extends the run" + d("epochs"))
    g.add_argument("--batch-size", type=int, help="per process" + d("batch_size"))
    g.add_argument("--accumulate", type=int, help="gradient accumulation steps" + d("accumulate"))
    g.add_argument("--lr", type=float, help="peak learning rate" + d("lr"))
    g.add_argument("--amp", choices=["auto", "bf16", "fp16", "none"], help="autocast dtype" + d("amp"))
    g.add_argument("--compile", action="store_true", default=None, help="torch.compile the model" + d("compile"))
    g.add_argument("--seed", type=int, help="epoch order, windows and augmentation draw from it" + d("seed"))
    g = ap.add_argument_group("run")
    g.add_argument("-o", "--out", help="run folder: checkpoints/, metrics.csv, metrics.png, config.yaml" + d("out"))
    g.add_argument("--device", default=None, help="cuda, cuda:1 or cpu (default: cuda if available)")
    g.add_argument("--max-steps-per-epoch", type=int, help="cap the steps of each epoch"
                   + d("max_steps_per_epoch", "none, the whole epoch"))
    g.add_argument("--log-every", type=int,
                   help="steps between reads of the running loss (the loop's only host sync)" + d("log_every"))
    g.add_argument("--checkpoint-keep", type=int,
                   help="epoch_NNN.pth files kept, newest first; last.pth and best.pth always" + d("checkpoint_keep"))
    g.add_argument("--stop-after-epochs", type=int, help="end this invocation after N epochs; re-run to resume "
                                                         "(default: none)")
    g.add_argument("--overwrite", "--no-resume", dest="resume", action="store_false", default=None,
                   help="start over: remove the run folder's checkpoints and metrics (default: resume the run there)")
    g.add_argument("--no-progress", dest="progress", action="store_false", default=None,
                   help="no progress bar" + d("progress"))
    add_common_arguments(ap, limit=False)
    return ap.parse_intermixed_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.list_configs:
        return run("train", lambda: print(config_table()) or 0, debug=args.debug)
    from dfdc_fast.runtime import tune_host_allocator

    tune_host_allocator()
    return run("train", lambda: _main(args), debug=args.debug)


def _main(args: argparse.Namespace) -> int:
    from dfdc_fast.runtime import check_device
    from dfdc_fast.train.loop import train

    check_device(args.device)  # no GPU for --device cuda: one line, before anything is read or written
    config = load_config(args.config, overrides=args.overrides, **{f: getattr(args, f) for f in FIELDS})
    print("config:", json.dumps(config.to_dict(), sort_keys=False), file=sys.stderr)
    result = train(config, device=args.device, stop_after_epochs=args.stop_after_epochs)
    if result.nothing_to_do:
        print(f"train: {result.nothing_to_do}", file=sys.stderr)
    if result.metrics:
        print(f"last epoch: {result.metrics[-1]}")
    print(f"checkpoint: {result.last_checkpoint}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
