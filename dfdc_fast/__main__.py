"""``python -m dfdc_fast``: the jobs there are, and how to start each."""
import sys

from dfdc_fast import __version__

JOBS = (
    ("probe", "one JSON line per video of a dataset: frames, size, fps, codec, status"),
    ("detect", "faces of every n-th frame as JSON lines (the static-shape MTCNN)"),
    ("extract", "face clips, crops and an index for a whole dataset (resumable, shardable)"),
    ("train", "train a 3D/2D CNN on extracted face clips (shipped configs: --list-configs)"),
    ("infer", "score a folder of videos into a DFDC submission.csv"),
)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--version":
        print(f"dfdc_fast {__version__}")
        return 0
    print(f"dfdc_fast {__version__}: a GPU-native video toolkit for deepfake detection.\n\nJobs "
          "(python -m dfdc_fast.<job> --help, or the console script dfdc-<job>):")
    for name, what in JOBS:
        print(f"  {name:<8} {what}")
    if argv and argv[0] not in ("-h", "--help"):
        print(f"\npython -m dfdc_fast: {argv[0]!r} is not an option here; run a job as python -m dfdc_fast.<job>",
              file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
