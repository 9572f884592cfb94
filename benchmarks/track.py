"""Tracking benchmark: 3D connected-component labelling and the per-video tracker, in one run.

Part 1, labelling (and labelling plus per-component boxes and sizes, which the tracker
needs), on the same masks for every implementation:

* ``skimage``     skimage.measure.label (+ regionprops bbox/area): what the Medics used (the peer)
* ``scipy``       scipy.ndimage.label with a 3x3x3 structure (+ find_objects, bincount)
* ``ours_cpu``    dfdc_fast label3d (+ component_stats), CPU kernel
* ``ours_cuda``   the same op, CUDA kernel, mask already on the GPU (GPU only)
* ``cupyx``       cupyx.scipy.ndimage.label (+ sum over labels for sizes) (GPU only)

Masks: face masks (rectangles following synthetic faces, as the tracker draws them) and
blob masks (thresholded smooth noise: many components, hard for union-find), at the
Medics' size (30 x 135 x 240), a batch of 64 such masks (one per video; the peers loop),
300 x 270 x 480, and full 1080p (300 x 1080 x 1920, face masks only). Every result is checked against
skimage before it is timed.

Part 2, the tracker per video: ``track_faces`` against the Medics' tracker rebuilt from
stock parts (numpy mask drawn box by box, gap fill, skimage.measure.label, per-component
numpy scans), on the same synthetic DFDC-like detections (30 sampled frames of 1080p,
two people and stray false positives).

    .venv/bin/python benchmarks/track.py                      # CPU
    python benchmarks/track.py --device cuda                  # GPU: adds ours_cuda, cupyx
    python benchmarks/track.py --cases medics,medics_batch    # a subset
    python benchmarks/track.py --cases all                    # every case, on a CPU too (many minutes)

Stopped (Ctrl-C, SIGTERM), it writes what it has measured (``complete: false``).
"""
from __future__ import annotations

import argparse
import sys
import traceback

import numpy as np
import torch

from dfdc_fast.bench import WrittenOnStop, environment, time_runs, write_result
from dfdc_fast.detect import Detections
from dfdc_fast.ops import component_stats, label3d
from dfdc_fast.track import track_faces

CASES = {  # name: (batch, T, H, W)
    "medics": (1, 30, 135, 240),
    "medics_batch": (64, 30, 135, 240),
    "large": (1, 300, 270, 480),
    "full_1080p": (1, 300, 1080, 1920),
}
KINDS = ("faces", "blobs")
#: full 1080p blob masks would take skimage minutes per run: faces only there
CASE_KINDS = {"full_1080p": ("faces",)}
#: On a CPU the defaults take 18 s of CPU (94 s wall on a loaded 2-core machine): the Medics' size
#: with both kinds, the batch of 64 with face masks (skimage's regionprops took 46 s per run
#: on the 64 blob masks there), 3 runs each. ``--cases all`` runs every case and kind.
CPU_CASES = ("medics", "medics_batch")
CPU_CASE_KINDS = {"medics_batch": ("faces",)}


# ---- inputs ---------------------------------------------------------------------------


def face_mask(shape, rng) -> np.ndarray:
    """Two or three faces drifting over time, drawn as filled rectangles."""
    T, H, W = shape
    m = np.zeros(shape, bool)
    for _ in range(rng.integers(2, 4)):
        size = int(rng.uniform(0.12, 0.25) * H)
        y, x = rng.uniform(0, H - size), rng.uniform(0, W - size)
        vy, vx = rng.normal(0, 0.002 * H), rng.normal(0, 0.003 * W)
        gone = set(rng.choice(T, size=T // 20, replace=False).tolist())  # missed detections
        for t in range(T):
            yy, xx = int(np.clip(y + vy * t, 0, H - size)), int(np.clip(x + vx * t, 0, W - size))
            if t not in gone:
                m[t, yy : yy + size, xx : xx + size] = True
    return m


def blob_mask(shape, rng) -> np.ndarray:
    from scipy.ndimage import uniform_filter

    noise = rng.random(shape, dtype=np.float32)
    return uniform_filter(noise, size=3) > 0.55


def make_masks(case, kind, seed=0) -> np.ndarray:
    B, T, H, W = CASES[case]
    rng = np.random.default_rng(seed)
    make = face_mask if kind == "faces" else blob_mask
    return np.stack([make((T, H, W), rng) for _ in range(B)])


# ---- labelling implementations (each returns the label count per mask) ---------------


def skimage_label(masks, with_stats):
    from skimage.measure import label, regionprops

    out = []
    for m in masks:
        lab = label(m, connectivity=3)
        if with_stats:
            [(r.bbox, r.area) for r in regionprops(lab)]
        out.append(int(lab.max()))
    return out


def scipy_label(masks, with_stats):
    from scipy import ndimage

    structure = np.ones((3, 3, 3), bool)
    out = []
    for m in masks:
        lab, n = ndimage.label(m, structure)
        if with_stats:
            ndimage.find_objects(lab)
            np.bincount(lab.ravel())
        out.append(int(n))
    return out


def ours_label(masks_t, with_stats):
    labels, num = label3d(masks_t)
    if with_stats:
        component_stats(labels, num)  # reads num.max(): the one sync
    return num.tolist()


def cupyx_label(masks_cp, with_stats):
    import cupy
    from cupyx.scipy import ndimage

    structure = cupy.ones((3, 3, 3), bool)
    out = []
    for m in masks_cp:
        lab, n = ndimage.label(m, structure)
        if with_stats:
            ndimage.sum_labels(cupy.ones_like(lab), lab, cupy.arange(1, n + 1))
            # cupyx has no find_objects in every version; boxes are left out, so this favours cupyx
        out.append(int(n))
    return out


def bench_labelling(args, device, results):
    gpu = device.type == "cuda"
    for case in args.cases:
        for kind in args.kinds.get(case, KINDS):
            masks = make_masks(case, kind)
            key = f"{case}/{kind}"
            B, T, H, W = masks.shape
            entry = {"shape": [B, T, H, W], "foreground": round(float(masks.mean()), 4)}
            results[key] = entry  # filled as it goes: a stopped run writes what it has
            print(f"{key:>24}: {B} masks of {T}x{H}x{W}, {entry['foreground']:.1%} set", flush=True)
            impls = {
                "skimage": lambda s: skimage_label(masks, s),
                "scipy": lambda s: scipy_label(masks, s),
            }
            masks_t = torch.from_numpy(masks)
            impls["ours_cpu"] = lambda s: ours_label(masks_t, s)
            masks_gpu = masks_t.to(device) if gpu else None
            if gpu:
                impls["ours_cuda"] = lambda s: ours_label(masks_gpu, s)
                try:
                    import cupy

                    masks_cp = cupy.asarray(masks)
                    impls["cupyx"] = lambda s: cupyx_label(masks_cp, s)
                except ImportError as exc:
                    entry["cupyx"] = {"available": False, "reason": f"ImportError: {exc}"}
            expected = None
            for name, fn in impls.items():
                if args.only and name not in args.only:
                    continue
                for mode, with_stats in (("label", False), ("label+boxes", True)):
                    try:
                        got = fn(with_stats)  # warm-up, and the correctness check
                        if expected is None:
                            expected = skimage_label(masks, False)
                        if got != expected:
                            raise RuntimeError(f"label counts {got[:4]} differ from skimage's {expected[:4]}")
                        t = time_runs(lambda: fn(with_stats), repeats=args.repeats, warmup=0,
                                      device=device if name in ("ours_cuda", "cupyx") else None)
                    except Exception as exc:
                        entry.setdefault(name, {})[mode] = {"available": False, "reason": f"{type(exc).__name__}: {exc}",
                                                            "traceback": traceback.format_exc(limit=3)}
                        print(f"{key:>24} {mode:>12} {name:>9}: FAILED {exc}", flush=True)
                        continue
                    entry.setdefault(name, {})[mode] = {"available": True, **t.to_dict(),
                                                        "masks_per_s": round(B / t.median_s, 2),
                                                        "voxels_per_s": round(B * T * H * W / t.median_s)}
                    print(f"{key:>24} {mode:>12} {name:>9}: median {t.median_s * 1e3:9.2f} ms", flush=True)
            if expected is not None and masks.shape[0] == 1:
                # exact equality of the label volumes, not only the counts
                from skimage.measure import label

                ref = label(masks[0], connectivity=3)
                entry["ours_cpu_equals_skimage"] = bool(np.array_equal(label3d(masks_t[0])[0].numpy(), ref))
                if gpu:
                    entry["ours_cuda_equals_cpu"] = bool(torch.equal(label3d(masks_gpu[0])[0].cpu(), label3d(masks_t[0])[0]))
            for mode in ("label", "label+boxes"):
                base = entry.get("skimage", {}).get(mode, {})
                for name in impls:
                    r = entry.get(name, {}).get(mode, {})
                    if r.get("available") and base.get("available"):
                        r["ratio_vs_skimage"] = round(base["median_s"] / r["median_s"], 2)


# ---- the tracker per video -------------------------------------------------------------


def synthetic_video_detections(seed, H=1080, W=1920, n_frames=300, step=10):
    """Two people with drifting boxes, a missed detection each, and two one-off false positives."""
    rng = np.random.default_rng(seed)
    samples = list(range(0, n_frames, step))
    people = []
    for x in (rng.uniform(200, 600), rng.uniform(1100, 1500)):
        size = rng.uniform(150, 300)
        people.append((x, rng.uniform(100, 500), size, rng.normal(0, 2), int(rng.integers(len(samples)))))
    boxes, scores = [], []
    for s, f in enumerate(samples):
        fb, fs = [], []
        for x, y, size, v, miss in people:
            if s != miss:
                fb.append([x + v * s, y, x + v * s + size, y + 1.25 * size])
                fs.append(rng.uniform(0.95, 1.0))
        if s in (7, 19):
            fb.append([rng.uniform(0, 1800), rng.uniform(0, 950), 0, 0])
            fb[-1][2:] = [fb[-1][0] + 60, fb[-1][1] + 80]
            fs.append(0.8)
        boxes.append(fb)
        scores.append(fs)
    return samples, boxes, scores, (n_frames, H, W)


def medics_tracker(samples, boxes, scores, shape, step=10, scale=1 / 8):
    """The Medics' get_roi_for_each_face, rebuilt from stock parts (numpy + skimage)."""
    from skimage.measure import label

    n_frames, H, W = shape
    mask = np.zeros((len(samples), int(H * scale), int(W * scale)), bool)
    for t, frame_boxes in enumerate(boxes):
        for x0, y0, x1, y1 in frame_boxes:
            mask[t, int(round(y0 * scale)) : int(round(y1 * scale)), int(round(x0 * scale)) : int(round(x1 * scale))] = True
    for t in range(1, len(mask) - 1):
        if not mask[t].any():
            mask[t] = mask[t - 1] & mask[t + 1]
    labels, n = label(mask, return_num=True)
    rois = []
    for i in range(1, n + 1):
        ts = np.where((labels == i).any(axis=(1, 2)))[0]
        rows, cols = [], []
        for t in ts:
            ys, xs = np.where(labels[t] == i)
            rows += [ys.min(), ys.max()]
            cols += [xs.min(), xs.max()]
        frame_from, frame_to = ts[0] * step, (ts[-1] + 1) * step - 1  # inclusive, as they wrote it
        frame_to = min(frame_to, frame_from + 300)
        if frame_to - frame_from >= 30:
            rois.append(((frame_from, min(frame_to + 1, n_frames)), (min(rows) / scale, (max(rows) + 1) / scale), (min(cols) / scale, (max(cols) + 1) / scale)))
    return rois


def bench_tracker(args, device, results):
    videos = [synthetic_video_detections(seed) for seed in range(args.tracker_videos)]
    dets = [Detections.from_lists(s, b, p, frame_size=shape[1:], device=device) for s, b, p, shape in videos]
    dets_cpu = [Detections.from_lists(s, b, p, frame_size=shape[1:]) for s, b, p, shape in videos]
    impls = {
        "medics_skimage": lambda: [medics_tracker(*v) for v in videos],
        "ours_mask_cpu": lambda: [track_faces(d, v[3]) for d, v in zip(dets_cpu, videos)],
        "ours_iou_cpu": lambda: [track_faces(d, v[3], method="iou") for d, v in zip(dets_cpu, videos)],
    }
    if device.type == "cuda":
        impls["ours_mask_cuda"] = lambda: [track_faces(d, v[3]) for d, v in zip(dets, videos)]
    entry = {"videos": len(videos), "detections": "30 sampled frames of 1080p, 2 people, 2 stray false positives"}
    counts = {}
    for name, fn in impls.items():
        try:
            out = fn()
            counts[name] = [[tuple(int(f) for f in r[0]) if isinstance(r, tuple) else (r.start, r.stop) for r in o]
                            for o in out]
            t = time_runs(fn, repeats=args.repeats, warmup=0, device=device if "cuda" in name else None)
        except Exception as exc:
            entry[name] = {"available": False, "reason": f"{type(exc).__name__}: {exc}"}
            print(f"{'tracker':>24} {name:>15}: FAILED {exc}", flush=True)
            continue
        entry[name] = {"available": True, **t.to_dict(), "videos_per_s": round(len(videos) / t.median_s, 1),
                       "ms_per_video": round(t.median_s / len(videos) * 1e3, 3), "tracks": sum(len(c) for c in counts[name])}
        print(f"{'tracker':>24} {name:>15}: {t.median_s / len(videos) * 1e3:8.3f} ms/video", flush=True)
    base = entry.get("medics_skimage", {})
    for name in impls:
        r = entry.get(name, {})
        if r.get("available") and base.get("available"):
            r["ratio_vs_medics_skimage"] = round(base["median_s"] / r["median_s"], 2)
    # same frame spans for every video: the rebuilt Medics tracker and ours agree
    entry["same_tracks_as_medics"] = counts.get("ours_mask_cpu") == counts.get("medics_skimage")
    results["tracker"] = entry


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                    help="(default: cuda when a GPU is usable, else cpu)")
    ap.add_argument("--cases", default=None,
                    help=f"comma-separated subset of {','.join(CASES)}, or all (default: all on a GPU; "
                         f"{','.join(CPU_CASES)} on a CPU, the batch with face masks only)")
    ap.add_argument("--only", default="", help="comma-separated subset of labelling implementations (default: all)")
    ap.add_argument("--repeats", type=int, default=None, help="timed runs per implementation (default: 5 on a GPU, 3 on a CPU)")
    ap.add_argument("--tracker-videos", type=int, default=None,
                    help="videos for the tracker part (default: 50 on a GPU, 20 on a CPU)")
    ap.add_argument("--no-tracker", action="store_true", help="skip the per-video tracker part")
    ap.add_argument("--out-dir", default=None, help="where the JSON goes (default: benchmarks/results)")
    args = ap.parse_args(argv)
    gpu = torch.device(args.device).type == "cuda"
    args.kinds = dict(CASE_KINDS) if gpu or args.cases else {**CASE_KINDS, **CPU_CASE_KINDS}
    args.cases = list(CASES) if args.cases == "all" or (args.cases is None and gpu) else \
        list(CPU_CASES) if args.cases is None else [c for c in args.cases.split(",") if c]
    args.repeats = args.repeats or (5 if gpu else 3)
    args.tracker_videos = args.tracker_videos or (50 if gpu else 20)
    unknown = [c for c in args.cases if c not in CASES]
    if unknown:
        ap.error(f"unknown cases {unknown}; allowed: {', '.join(CASES)}")
    args.only = {s for s in args.only.split(",") if s}
    device = torch.device(args.device)
    torch.set_num_threads(max(1, torch.get_num_threads()))

    results: dict = {}
    stop = WrittenOnStop("track", device, results, args.out_dir, {"cases": args.cases})  # noqa: F841 - Ctrl-C/SIGTERM
    bench_labelling(args, device, results)
    if not args.no_tracker:
        bench_tracker(args, device, results)
    inputs = {"cases": {c: list(CASES[c]) for c in args.cases},
              "kinds": {c: list(args.kinds.get(c, KINDS)) for c in args.cases}, "connectivity": 26,
              "seed": 0, "task": "label a bool (T, H, W) mask (a batch loops per mask for the peers); "
                                  "label+boxes adds per-component bounding boxes and voxel counts"}
    path = write_result("track", environment(device), inputs, results, args.out_dir,
                        extra={"unit": "seconds per batch of masks", "repeats": args.repeats})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
