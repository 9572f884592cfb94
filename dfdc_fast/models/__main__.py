"""``python -m dfdc_fast.models import --recipe selim|ntech|medics SRC... -o DIR``.

Converts the DFDC winners' published weight files (their release names) into dfdc_fast
checkpoints that ``infer --recipe NAME DIR/*.pth`` loads; ``list`` prints the registry.
"""
from __future__ import annotations

import argparse
import os
import sys


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m dfdc_fast.models", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    imp = sub.add_parser("import", help="convert a seed system's published weights into dfdc_fast checkpoints")
    imp.add_argument("--recipe", required=True, choices=("selim", "ntech", "medics"))
    imp.add_argument("sources", nargs="+", metavar="SRC", help="the published files, under their release names")
    imp.add_argument("-o", "--out", required=True, metavar="DIR", help="folder for the converted checkpoints")
    imp.add_argument("--debug", action="store_true", help="show tracebacks")
    sub.add_parser("list", help="registered model names")
    return parser


def import_weights(recipe: str, sources: list[str], out: str) -> list[str]:
    """Convert every source, all checked (both sides strictly) before anything is written;
    returns the written paths."""
    from dfdc_fast.models.checkpoint import save_checkpoint
    from dfdc_fast.models.convert import prepare_converted
    from dfdc_fast.recipes import get_recipe

    rec = get_recipe(recipe)
    plans = []
    for src in sources:
        name, converted = rec.convert(src)
        model, config = prepare_converted(converted, src, recipe=rec.name)
        plans.append((name, converted, model, config))
    names = [name for name, *_ in plans]
    clash = sorted({n for n in names if names.count(n) > 1})
    if clash:
        raise ValueError(f"two sources convert to the same file {clash}: pass each published file once")
    os.makedirs(out, exist_ok=True)
    written = []
    for name, converted, model, config in plans:
        path = os.path.join(out, name)
        save_checkpoint(path, model, model_name=converted.model_name, model_kwargs=converted.model_kwargs,
                        config=config)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    from dfdc_fast.cli import run

    args = _parser().parse_args(argv)
    if args.command == "list":
        from dfdc_fast.models import list_models

        print("\n".join(list_models()))
        return 0

    def body() -> int:
        for path in import_weights(args.recipe, args.sources, args.out):
            print(path)
        return 0

    return run("models import", body, debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())
