"""``python -m dfdc_fast.train -c CONFIG``: train one detector on extracted face clips.

Configs shipped with the package (``--list-configs``) reproduce the seed models' recipes.
Every field can be set: the common ones by a flag, any one (nested too) as ``KEY=VALUE``
after the options, e.g. ``optimizer=sgd weight_decay=5e-4 augment.hflip=0.3``; values are
read as YAML and typed by the config, unknown keys refused. The resolved config is printed
and saved as ``OUT/config.yaml``. Under ``torchrun`` each process trains on its share
of every epoch (DDP). Re-running the same command resumes from the last checkpoint.
"""
from __future__ import annotations

import argparse
import json
import sys

from dfdc_fast.cli import add_common_arguments, run
from dfdc_fast.train.config import list_configs, load_config


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m dfdc_fast.train", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-c", "--config", help="a shipped config name (see --list-configs) or a YAML file")
    ap.add_argument("--list-configs", action="store_true", help="print the shipped configs and exit")
    ap.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                    help="set any config field, nested ones by dotted keys (augment.hflip=0.3); YAML values")
    g = ap.add_argument_group("data")
    g.add_argument("--data", help="extraction output folder holding index.csv (config: data)")
    g.add_argument("--val-parts", type=lambda s: [int(x) for x in s.split(",") if x],
                   help="DFDC parts held out, e.g. 45,46,47,48,49")
    g.add_argument("--val-fraction", type=float, help="share of original videos held out when no parts are given")
    g.add_argument("--loader", choices=["auto", "pyav", "nvdec", "dali"], help="clip decoding (default: auto)")
    g.add_argument("--workers", type=int,
                   help="decode workers: DataLoader processes (pyav), decoder processes with one NVDEC session each "
                        "(nvdec), DALI threads (dali)")
    g.add_argument("--prefetch", type=int, help="batches decoded ahead of the training step")
    g.add_argument("--frames", type=int, help="frames per clip (default: the model's)")
    g.add_argument("--input-size", type=int, help="input side in pixels (default: the model's)")
    g = ap.add_argument_group("model and optimisation")
    g.add_argument("--model", help="registered model name (dfdc_fast.models.list_models())")
    g.add_argument("--pretrained", help="local weights file to start from (head re-initialised)")
    g.add_argument("--epochs", type=int)
    g.add_argument("--batch-size", type=int, help="per process")
    g.add_argument("--accumulate", type=int, help="gradient accumulation steps")
    g.add_argument("--lr", type=float, help="peak learning rate")
    g.add_argument("--amp", choices=["auto", "bf16", "fp16", "none"])
    g.add_argument("--compile", action="store_true", default=None, help="torch.compile the model")
    g.add_argument("--seed", type=int)
    g = ap.add_argument_group("run")
    g.add_argument("-o", "--out", help="run folder: checkpoints/, metrics.csv, metrics.png, config.yaml")
    g.add_argument("--device", default=None, help="cuda, cuda:1 or cpu (default: cuda if available)")
    g.add_argument("--max-steps-per-epoch", type=int, help="cap the steps of each epoch (smoke runs)")
    g.add_argument("--log-every", type=int, help="steps between reads of the running loss (the loop's only host sync)")
    g.add_argument("--stop-after-epochs", type=int, help="end this invocation after N epochs; re-run to resume")
    g.add_argument("--no-resume", dest="resume", action="store_false", default=None,
                   help="start over even if the run folder holds checkpoints")
    g.add_argument("--no-progress", dest="progress", action="store_false", default=None)
    add_common_arguments(ap, limit=False)
    return ap.parse_intermixed_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.list_configs:
        print("\n".join(list_configs()))
        return 0
    from dfdc_fast.runtime import tune_host_allocator

    tune_host_allocator()
    return run("train", lambda: _main(args), debug=args.debug)


def _main(args: argparse.Namespace) -> int:
    from dfdc_fast.runtime import check_device
    from dfdc_fast.train.loop import train

    check_device(args.device)  # no GPU for --device cuda: one line, before anything is read or written
    fields = ["data", "val_parts", "val_fraction", "loader", "workers", "prefetch", "frames", "input_size", "model", "pretrained",
              "epochs", "batch_size", "accumulate", "lr", "amp", "compile", "seed", "out", "max_steps_per_epoch",
              "log_every", "resume", "progress"]
    config = load_config(args.config, overrides=args.overrides, **{f: getattr(args, f) for f in fields})
    print("config:", json.dumps(config.to_dict(), sort_keys=False), file=sys.stderr)
    result = train(config, device=args.device, stop_after_epochs=args.stop_after_epochs)
    if result.metrics:
        print(f"last epoch: {result.metrics[-1]}")
    print(f"checkpoint: {result.last_checkpoint}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
