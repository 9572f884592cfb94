"""Rebuild the demo clips shipped in dfdc_fast/assets/demo from the DFDC sample set.

Each demo clip is the first 150 frames (5 s) of a real DFDC clip, downscaled by 2
(960x540, portrait 540x960) and re-encoded with libx264; a few MB in all. Run from the
repository root:  .venv/bin/python scripts/make_demo_set.py [--src ../shared/data/dfdc_samples]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os

import av

# (file, why it is in the demo set)
CLIPS = [
    ("ccfoszqabv.mp4", "REAL, one person; the original of acqfdwsrhi"),
    ("acqfdwsrhi.mp4", "FAKE made from ccfoszqabv: a real/fake pair with aligned faces"),
    ("afoovlsmtx.mp4", "REAL, portrait 1080x1920"),
    ("bndybcqhfr.mp4", "FAKE whose original is not in the set"),
]
FRAMES = 150
SCALE = 2


def excerpt(src: str, dst: str) -> dict:
    tmp = dst + ".tmp.mp4"
    with av.open(src) as inp:
        s = inp.streams.video[0]
        s.thread_type = "AUTO"
        w, h = s.codec_context.width // SCALE, s.codec_context.height // SCALE
        rate = s.average_rate
        with av.open(tmp, "w", options={"movflags": "faststart"}) as out:
            o = out.add_stream("libx264", rate=rate, options={"crf": "24", "preset": "medium"})
            o.width, o.height, o.pix_fmt = w, h, "yuv420p"
            o.codec_context.time_base = 1 / rate
            n = 0
            for frame in inp.decode(s):
                small = frame.reformat(width=w, height=h, format="yuv420p", interpolation="AREA")
                small.pts = n
                small.time_base = o.codec_context.time_base
                for p in o.encode(small):
                    out.mux(p)
                n += 1
                if n == FRAMES:
                    break
            for p in o.encode():
                out.mux(p)
    os.replace(tmp, dst)
    return {"width": w, "height": h, "frames": n, "fps": float(rate)}


def main() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", default=os.path.join(here, "..", "..", "shared", "data", "dfdc_samples"))
    ap.add_argument("--dst", default=os.path.join(here, "..", "dfdc_fast", "assets", "demo"))
    args = ap.parse_args()
    meta_src = json.load(open(os.path.join(args.src, "metadata.json")))
    os.makedirs(args.dst, exist_ok=True)
    meta, rows = {}, []
    for name, why in CLIPS:
        facts = excerpt(os.path.join(args.src, name), os.path.join(args.dst, name))
        meta[name] = meta_src[name]
        digest = hashlib.sha256(open(os.path.join(args.src, name), "rb").read()).hexdigest()[:16]
        rows.append(f"| {name} | {meta_src[name]['label']} | {meta_src[name]['original'] or '-'} | "
                    f"{facts['width']}x{facts['height']} | {facts['frames']} | {why} | {digest} |")
    with open(os.path.join(args.dst, "metadata.json"), "w") as f:
        json.dump(meta, f, indent=1)
    with open(os.path.join(args.dst, "SOURCES.md"), "w") as f:
        f.write("# Demo clips\n\nShort, downscaled excerpts of real DFDC (Kaggle 2020) training clips, made by\n"
                "`scripts/make_demo_set.py`: the first 150 frames, half resolution, libx264 CRF 24.\n"
                "Labels and `original` come from the DFDC metadata of the full clips.\n\n"
                "| file | label | original | size | frames | why | sha256 of the source clip (16) |\n|---|---|---|---|---|---|---|\n")
        f.write("\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
