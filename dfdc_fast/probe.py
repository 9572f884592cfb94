"""``python -m dfdc_fast.probe VIDEO_OR_DIR...``: one JSON line per video, like ffprobe for a dataset.

Folders are discovered as datasets (DFDC parts, a folder with metadata.json, or a
plain folder), so videos listed but missing, present but unlisted, or refused for an
unsafe name are reported too. Each line has: path, frames, width, height, fps, codec,
status (ok | decode_error | missing | unlisted | error) and error, plus rotation,
duration, pix_fmt, vfr, size_bytes, label and part where known.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
from dataclasses import dataclass
from typing import Iterator, Optional

from dfdc_fast.data import Dataset, VideoEntry, from_paths
from dfdc_fast.io import DECODERS, Every, check_decoder, VideoDecodeError, read_header, read_videos


LAYOUTS = ("auto", "dfdc_parts", "metadata", "plain")


@dataclass
class ProbeConfig:
    paths: list
    decode: bool = False
    decoder: str = "pyav"
    device: str = "cpu"
    workers: int = 1
    layout: str = "auto"
    limit: Optional[int] = None
    progress: bool = True
    follow_links: bool = False

    def __post_init__(self):
        """Every option checked before the first line is printed."""
        from dfdc_fast import checks
        from dfdc_fast.runtime import check_device

        checks.choice("decoder", self.decoder, DECODERS)
        checks.choice("layout", self.layout, LAYOUTS)
        checks.integer("workers", self.workers, 1)
        checks.integer("limit", self.limit, 0, none_ok=True)
        device = check_device(self.device)
        if self.decode:
            check_decoder(self.decoder, device)


def _record(path: str, entry: Optional[VideoEntry], status: str, error: Optional[str], info=None,
            stat: bool = True) -> dict:
    rec = {
        "path": path, "frames": None, "width": None, "height": None, "fps": None, "codec": None,
        "status": status, "error": error,
    }
    if info is not None:
        rec.update(frames=info.num_frames, width=info.width, height=info.height, fps=round(info.fps, 4),
                   codec=info.codec, rotation=info.rotation, duration=info.duration, pix_fmt=info.pix_fmt,
                   vfr=info.variable_frame_rate)
    rec["size_bytes"] = None
    if stat:
        try:
            rec["size_bytes"] = os.path.getsize(path)
        except OSError:
            pass
    if entry is not None:
        rec.update(label=entry.label, part=entry.part or None, original=entry.original)
    return rec


def probe_dataset(ds: Dataset, cfg: ProbeConfig) -> Iterator[dict]:
    """Probe every video of ``ds`` and report what did not match its metadata."""
    for name, reason in ds.rejected:
        # the name as listed, never resolved or looked at: it may point outside the dataset
        where = "refused name in metadata.json" if ds.layout != "plain" else "refused"
        yield {**_record(name, None, "error", f"{where}: {reason}", stat=False), "path": name}
    for entry in ds.missing:
        yield _record(entry.path, entry, "missing", "listed in metadata.json but not on disk")
    entries = {e.path: e for e in ds.videos}
    unlisted = list(ds.unlisted)
    paths = [e.path for e in ds.videos] + unlisted
    for path, rec in probe_files(paths, cfg):
        entry = entries.get(path)
        if entry is not None:
            rec.update(label=entry.label, part=entry.part or None, original=entry.original)
        elif rec["status"] == "ok":
            rec.update(status="unlisted", error="video on disk but not in metadata.json")
        yield rec


def probe_files(paths: list, cfg: ProbeConfig) -> Iterator[tuple[str, dict]]:
    """``(path, record)`` per file, by header + packet scan, or by full decoding (``cfg.decode``)."""
    if cfg.decode:
        # Every(huge) keeps frame 0 only but decodes to the end, which counts the frames.
        for path, result in read_videos(paths, Every(1 << 30), device=cfg.device, decoder=cfg.decoder,
                                        workers=cfg.workers):
            if isinstance(result, VideoDecodeError):
                yield path, _record(path, None, "decode_error", result.cause)
            else:
                yield path, _record(path, None, "ok", None, result.info)
        return
    for path in paths:
        try:
            info = read_header(path, count_frames=True, decode_first=True)
        except VideoDecodeError as exc:
            yield path, _record(path, None, "decode_error", exc.cause)
        else:
            yield path, _record(path, None, "ok", None, info)


def build_parser() -> argparse.ArgumentParser:
    from dfdc_fast.cli import JobParser

    ap = JobParser(prog="python -m dfdc_fast.probe", description=__doc__.replace("``", ""))
    ap.add_argument("paths", nargs="+", metavar="VIDEO_OR_DIR", help="video files and/or dataset folders")
    ap.add_argument("--decode", action="store_true",
                    help="decode every frame to verify the video and count frames (default: header and packet scan only)")
    ap.add_argument("--decoder", default="pyav", choices=DECODERS, help="backend for --decode (default: %(default)s)")
    ap.add_argument("--device", default="cpu", help="device for --decode, e.g. cuda:0 (default: %(default)s)")
    ap.add_argument("--workers", type=int, default=1, help="videos decoded at once with --decode (default: %(default)s)")
    ap.add_argument("--layout", default="auto", choices=LAYOUTS,
                    help="dataset layout of folders (default: %(default)s)")
    ap.add_argument("--follow-links", action="store_true", help="accept symbolic links that point out of a dataset folder (a folder of links to try a subset): each is resolved once and its target recorded as the video's path")
    return ap


def main(argv: Optional[list] = None) -> int:
    from dfdc_fast.cli import add_common_arguments, run

    parser = build_parser()
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    return run("probe", lambda: _main(args), debug=args.debug)


def _main(args: argparse.Namespace) -> int:
    """One JSON line per video on stdout (a bar on stderr, on a terminal); exit 1 when any is not ok."""
    from tqdm import tqdm

    values = {k: v for k, v in vars(args).items() if k in ProbeConfig.__dataclass_fields__}
    cfg = ProbeConfig(**values)
    lines: list = []
    for p in cfg.paths:
        if not os.path.exists(p):
            lines.append(_record(p, None, "missing", "no such file or folder"))
    datasets = from_paths([p for p in cfg.paths if os.path.exists(p)], cfg.layout, cfg.follow_links)
    total = len(lines) + sum(len(ds.rejected) + len(ds.missing) + len(ds.videos) + len(ds.unlisted) for ds in datasets)
    if cfg.limit is not None:
        total = min(total, cfg.limit)
    records = itertools.chain(lines, (rec for ds in datasets for rec in probe_dataset(ds, cfg)))
    bad = 0
    with tqdm(total=total, unit="video", desc="probe", file=sys.stderr, dynamic_ncols=True,
              disable=None if cfg.progress else True) as bar:
        for rec in itertools.islice(records, total):
            bad += rec["status"] != "ok"
            print(json.dumps(rec), flush=True)
            bar.update(1)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
