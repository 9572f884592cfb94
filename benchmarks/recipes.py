"""Recipe building blocks: what numba buys on the host loops, what the device SSIM costs
against skimage, and what NTechLab's on-the-fly re-encode costs per pair.

* ``iou``      the IoU tracker, numba (``iou_tracks``) vs pure Python (``iou_tracks_python``),
  on synthetic detections: one video sampled at their step (50 rows x 2 faces), a long
  one (300 x 4) and a batch's worth (3000 x 4). The results are checked equal first.
* ``align``    REAL/FAKE track pairing, numba vs Python: one video's tracks (2 x 2 tracks of
  25 detections) and a crowded one (6 x 6 tracks of 50).
* ``ssim``     Selim's diff masks of 32 crop pairs (~200 x 160): ``ssim_diff`` float64 and
  float32 (one batched call) vs skimage + OpenCV per pair; the largest grey-level gap and the
  fraction of pixels that differ are recorded.
* ``reencode`` one 50-frame pair (two clips of 160 x 128) decoded from x264 files as the
  loader does, without and with the re-encode at four fixed draws (full size 30 fps, half
  size, 15 fps, quarter size).

    .venv/bin/python benchmarks/recipes.py
"""
from __future__ import annotations

import argparse
import os
import tempfile

import numpy as np
import torch

from dfdc_fast.bench import WrittenOnStop, environment, time_runs, write_result


def _detections(rows: int, faces: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    boxes = np.zeros((rows, faces, 4), np.float32)
    scores = np.zeros((rows, faces), np.float32)
    counts = np.full(rows, faces, np.int64)
    counts[rng.random(rows) < 0.05] = faces - 1  # a face missed now and then
    centres = rng.uniform(100, 1700, (faces, 2))
    for r in range(rows):
        centres += rng.normal(0, 4, centres.shape)
        for k in range(faces):
            c = centres[k]
            boxes[r, k] = (c[0] - 60, c[1] - 80, c[0] + 60, c[1] + 80)
            scores[r, k] = rng.uniform(0.5, 1.0)
    return boxes, scores, counts


def bench_iou(repeats: int) -> dict:
    from dfdc_fast.track.iou import IouSettings, iou_tracks, iou_tracks_python

    out = {}
    for name, rows, faces in (("video_50x2", 50, 2), ("long_300x4", 300, 4), ("batch_3000x4", 3000, 4)):
        b, s, c = _detections(rows, faces)
        args = (b, s, c, list(range(rows)), IouSettings(), 7)
        if iou_tracks(*args) != iou_tracks_python(*args):
            raise AssertionError(f"iou {name}: numba and Python disagree")
        tn = time_runs(lambda: iou_tracks(*args), repeats=repeats)
        tp = time_runs(lambda: iou_tracks_python(*args), repeats=repeats)
        out[name] = {"numba_ms": round(tn.median_s * 1e3, 3), "python_ms": round(tp.median_s * 1e3, 3),
                     "speedup": round(tp.median_s / tn.median_s, 2)}
    return out


def bench_align(repeats: int) -> dict:
    from dfdc_fast.track.pairs import align_tracks, align_tracks_python

    rng = np.random.default_rng(1)
    out = {}
    for name, n, dets in (("video_2x2_25", 2, 25), ("crowded_6x6_50", 6, 50)):
        real = []
        for i in range(n):
            f = np.arange(0, dets * 6, 6)
            box = np.array([100 + 250 * i, 100, 220 + 250 * i, 260], np.float32)
            real.append((f, np.tile(box, (dets, 1)) + rng.normal(0, 2, (dets, 4)).astype(np.float32)))
        fake = [(f, b + rng.normal(0, 3, b.shape).astype(np.float32)) for f, b in real[::-1]]
        if align_tracks(real, fake) != align_tracks_python(real, fake):
            raise AssertionError(f"align {name}: numba and Python disagree")
        tn = time_runs(lambda: align_tracks(real, fake), repeats=repeats)
        tp = time_runs(lambda: align_tracks_python(real, fake), repeats=repeats)
        out[name] = {"numba_ms": round(tn.median_s * 1e3, 3), "python_ms": round(tp.median_s * 1e3, 3),
                     "speedup": round(tp.median_s / tn.median_s, 2)}
    return out


def bench_ssim(repeats: int, device: torch.device) -> dict:
    from dfdc_fast.crops.ssim import ssim_diff, ssim_diff_reference

    rng = np.random.default_rng(2)
    pairs, sizes = [], []
    for _ in range(32):
        h, w = int(rng.integers(180, 220)), int(rng.integers(140, 180))
        yy, xx = np.mgrid[0:h, 0:w]
        base = np.stack([(xx * 2 + yy) % 256, (yy + 30) % 256, (xx + 2 * yy) % 256], -1).astype(np.float64)
        a = np.clip(base + rng.normal(0, 10, base.shape), 0, 255).astype(np.uint8)
        b = a.copy()
        blob = (yy - h / 2) ** 2 / (h / 4) ** 2 + (xx - w / 2) ** 2 / (w / 5) ** 2 < 1
        b[blob] = np.clip(b[blob].astype(np.int16) + rng.integers(-30, 30, (blob.sum(), 3)), 0, 255).astype(np.uint8)
        pairs.append((a, b))
        sizes.append((h, w))
    hm, wm = max(h for h, _ in sizes), max(w for _, w in sizes)
    x = torch.zeros((32, hm, wm, 3), dtype=torch.uint8)
    y = torch.zeros_like(x)
    for i, (a, b) in enumerate(pairs):
        x[i, :a.shape[0], :a.shape[1]] = torch.from_numpy(a)
        y[i, :b.shape[0], :b.shape[1]] = torch.from_numpy(b)
    x, y = x.to(device), y.to(device)
    refs = [ssim_diff_reference(a, b) for a, b in pairs]
    out = {}
    for dtype in (torch.float64, torch.float32):
        got = ssim_diff(x, y, sizes, dtype=dtype).cpu().numpy().astype(int)
        gaps = [np.abs(got[i, :h, :w] - r.astype(int)) for i, ((h, w), r) in enumerate(zip(sizes, refs))]
        t = time_runs(lambda: ssim_diff(x, y, sizes, dtype=dtype), repeats=repeats, device=device)
        out[str(dtype).split(".")[-1]] = {
            "ms_32_pairs": round(t.median_s * 1e3, 2), "max_grey_gap": int(max(g.max() for g in gaps)),
            "fraction_differing": float(sum(int((g > 0).sum()) for g in gaps) / sum(g.size for g in gaps))}
    t = time_runs(lambda: [ssim_diff_reference(a, b) for a, b in pairs], repeats=repeats)
    out["skimage"] = {"ms_32_pairs": round(t.median_s * 1e3, 2)}
    return out


def bench_reencode(repeats: int) -> dict:
    from dfdc_fast.augment.reencode import ReencodeParams, map_indices, reencode
    from dfdc_fast.crops import write_mp4
    from dfdc_fast.train.loaders import decode_window, packet_index

    rng = np.random.default_rng(3)
    h, w, n = 160, 128, 50
    yy, xx = np.mgrid[0:h, 0:w]
    frames = np.stack([np.stack([(xx * 2 + t * 3) % 256, (yy + t) % 256, np.full_like(xx, 120)], -1)
                       for t in range(n)]).astype(np.uint8)
    frames = np.clip(frames.astype(np.int16) + rng.integers(-6, 6, frames.shape), 0, 255).astype(np.uint8)
    indices = list(range(19, 32, 2))
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for k in range(2):
            p = os.path.join(tmp, f"{k}.mp4")
            write_mp4(p, frames, 30.0, crf=18, keyint=16)
            paths.append(p)
        packet_index(paths[0]), packet_index(paths[1])

        def plain():
            for p in paths:
                decode_window(p, indices)
        out["decode_only_ms"] = round(time_runs(plain, repeats=repeats).median_s * 1e3, 2)
        for name, params in (("full_30fps_crf28", ReencodeParams(30.0, h, w, 28, "film")),
                             ("half_size", ReencodeParams(30.0, h // 2, w // 2, 28, "film")),
                             ("fps_15", ReencodeParams(15.0, h, w, 28, "zerolatency")),
                             ("quarter_size", ReencodeParams(30.0, h // 4, w // 4, 35, "fastdecode"))):
            def both():
                for p in paths:
                    whole, _, _ = decode_window(p, list(range(n)))
                    coded = reencode(whole, 30.0, params)
                    coded[map_indices(indices, n, len(coded))]
            out[name + "_ms"] = round(time_runs(both, repeats=repeats).median_s * 1e3, 2)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out-dir", "--out", dest="out", default=None, help="results folder (default: benchmarks/results)")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    results: dict = {}
    stop = WrittenOnStop("recipes", device, results, args.out, {"device": str(device), "repeats": args.repeats})  # noqa: F841
    results["iou"] = bench_iou(args.repeats)
    results["align"] = bench_align(args.repeats)
    results["ssim"] = bench_ssim(args.repeats, device)
    results["reencode"] = bench_reencode(args.repeats)
    for k, v in results.items():
        print(k, v)
    path = write_result("recipes", environment(device), {"device": str(device), "repeats": args.repeats}, results,
                        out_dir=args.out)
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
