"""``python -m dfdc_fast.evaluate SUBMISSION LABELS... [-o DIR]``.

Prints the figures; writes ``evaluation.json`` and ``evaluation.png`` to DIR (default:
the submission's folder). A refused submission is one line on stderr, exit code 2.
"""
from __future__ import annotations

import argparse
import json
import os
import sys


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m dfdc_fast.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("submission", help="a DFDC submission.csv (filename,label)")
    parser.add_argument("labels", nargs="+", help="metadata.json files, folders holding them, or a CSV "
                                                  "(filename,label[,part])")
    parser.add_argument("-o", "--out", default=None, metavar="DIR", help="where evaluation.json/.png go")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    return parser


def main(argv: list[str] | None = None) -> int:
    from dfdc_fast.cli import run

    args = _parser().parse_args(argv)

    def body() -> int:
        from dfdc_fast.evaluate import evaluate, read_labels
        from dfdc_fast.evaluate.picture import draw
        from dfdc_fast.files import write_json

        report = evaluate(args.submission, read_labels(args.labels))
        out = args.out or os.path.dirname(os.path.abspath(args.submission))
        write_json(os.path.join(out, "evaluation.json"), report)
        draw(report, os.path.join(out, "evaluation.png"))
        shown = {k: v for k, v in report.items() if k not in ("roc", "calibration")}
        print(json.dumps(shown, indent=1))
        return 0

    return run("evaluate", body, debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())
