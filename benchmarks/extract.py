"""Extraction benchmark: videos/s end to end, ours against the seed pipeline built from stock parts.

Both take the same clips to face clips and 2D crops on disk, in one run:

* ``stock``  what the seeds ran, one video at a time: OpenCV decode of every frame, every
  10th frame resized 0.5x and detected by facenet-pytorch's MTCNN (0.6/0.7/0.7), the
  Medics' tracker (numpy mask + skimage.measure.label, per 150-frame chunk), per-frame
  crop + zero-pad + cv2.resize to 256, H.264 through PyAV/libx264, and 32 2D crops per
  video with a 1/3 margin written by cv2.imwrite (the peer)
* ``ours_wN``   dfdc_fast.extract.run_extraction with N engine worker processes (NVDEC and
  the GPU on a GPU machine; PyAV and the CPU kernels otherwise), the rest at its defaults

The clips are the sample clips repeated under distinct names (hard links) up to
--videos, so fixed costs (model loading, process start) are a small share; each run's
start-up (until the workers are ready) is reported apart from its steady-state rate.
Each timed run writes into a fresh folder. Reports videos/s from the median of --repeats
runs and each ours/stock ratio, per-stage busy seconds summed over videos (decode,
detect+track, cut, host copy, encode) and peak GPU memory of a worker; writes JSON to
benchmarks/results/.

    .venv/bin/python benchmarks/extract.py                                # CPU: 12 videos, 2 workers
    python benchmarks/extract.py --device cuda                            # GPU: 60 videos, 1/2/4/7 workers
    .venv/bin/python benchmarks/extract.py --fakes-per-original 5 --only ours   # detection only where it is used

``--fakes-per-original K`` labels the clips as DFDC does: each clip is a REAL original with
K FAKEs (hard links of it under other names: the same scene, as a DFDC fake is, so their
detection costs the same). ``ours_reuse_all`` is the Medics' export (a fake whose original's
record exists reuses its tracks, no detection), ``ours_detect_fakes`` detects and tracks
every fake too (``reuse_original 2d``); ``detect_track_s`` is their detection seconds.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from fractions import Fraction

import numpy as np
import torch

from dfdc_fast.bench import (DEFAULT_SAMPLES, add_common_args, clips_or_exit, environment, read_frames_cv2,
                             repeated_clips, time_runs, write_result, WrittenOnStop)
from dfdc_fast.runtime import tune_host_allocator
from dfdc_fast.extract import ExtractConfig, run_extraction

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import track as track_bench  # noqa: E402  (the Medics' tracker rebuilt from stock parts)



def stock_video(path, out, mtcnn, every=10, chunk=150, size=256, crops=32):
    """One video through the seed pipeline; returns the number of clips written."""
    import av
    import cv2

    frames, fps = read_frames_cv2(path)
    if not frames:
        return 0
    h, w = frames[0].shape[:2]
    sampled = list(range(0, len(frames), every))
    small = [cv2.resize(frames[i], (w // 2, h // 2)) for i in sampled]
    boxes, probs = mtcnn.detect(small)
    boxes = [[] if b is None else (np.asarray(b, dtype=np.float32) * 2).tolist() for b in boxes]
    probs = [[] if p is None or p[0] is None else list(p) for p in probs]
    name = os.path.splitext(os.path.basename(path))[0]
    n_clips = 0
    for c0 in range(0, len(frames), chunk):
        sel = [k for k, f in enumerate(sampled) if c0 <= f < c0 + chunk]
        rois = track_bench.medics_tracker([sampled[k] - c0 for k in sel], [boxes[k] for k in sel],
                                          [probs[k] for k in sel], (min(chunk, len(frames) - c0), h, w), step=every)
        for ti, ((f0, f1), (r0, r1), (q0, q1)) in enumerate(rois):
            r0, r1, q0, q1 = int(r0), int(r1), int(q0), int(q1)
            with av.open(os.path.join(out, f"{name}_{c0 // chunk}_{ti}.mp4"), "w") as container:
                stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
                stream.width = stream.height = size
                stream.pix_fmt = "yuv420p"
                stream.options = {"crf": "18", "preset": "veryfast"}
                for f in range(c0 + f0, c0 + f1):
                    crop = frames[f][r0:r1, q0:q1]
                    side = max(crop.shape[:2])
                    square = np.zeros((side, side, 3), np.uint8)
                    square[: crop.shape[0], : crop.shape[1]] = crop
                    face = cv2.resize(square, (size, size))
                    container.mux(stream.encode(av.VideoFrame.from_ndarray(face, format="rgb24")))
                container.mux(stream.encode())
            n_clips += 1
    for f in np.linspace(0, len(frames) - 1, crops).round().astype(int):
        k = min(range(len(sampled)), key=lambda i: abs(sampled[i] - f))  # nearest detection, as per-frame boxes
        for j, (x0, y0, x1, y1) in enumerate(boxes[k]):
            dw, dh = (x1 - x0) / 3, (y1 - y0) / 3
            crop = frames[f][max(0, int(y0 - dh)): int(y1 + dh), max(0, int(x0 - dw)): int(x1 + dw)]
            if crop.size:
                cv2.imwrite(os.path.join(out, f"{name}_{j}_{f}.jpg"), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
    return n_clips


def paired_clips(paths: list[str], count: int, fakes: int, folder: str) -> list[str]:
    """``count`` videos in ``folder`` with a metadata.json: clip after clip, a REAL original
    followed by ``fakes`` FAKE hard links of it (DFDC has about 5 fakes per original)."""
    os.makedirs(folder, exist_ok=True)
    meta, out = {}, []
    for i in range(count):
        group, k = divmod(i, fakes + 1)
        src = os.path.abspath(paths[group % len(paths)])
        real = f"g{group:02d}_{os.path.basename(src)}"
        name = real if k == 0 else f"g{group:02d}f{k}_{os.path.basename(src)}"
        dst = os.path.join(folder, name)
        if not os.path.lexists(dst):
            try:
                os.link(src, dst)
            except OSError:
                shutil.copyfile(src, dst)
        meta[name] = {"label": "REAL", "split": "train"} if k == 0 else \
            {"label": "FAKE", "split": "train", "original": real}
        out.append(dst)
    with open(os.path.join(folder, "metadata.json"), "w") as f:
        json.dump(meta, f)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", default=DEFAULT_SAMPLES, help="folder of DFDC clips (default: ../shared/data/dfdc_samples)")
    ap.add_argument("--videos", type=int, default=None,
                    help="videos per run, the clips repeated under distinct names (default: 60 on a GPU, 12 on a CPU)")
    ap.add_argument("--repeats", type=int, default=1, help="timed runs per implementation (default: %(default)s)")
    ap.add_argument("--workers", default=None,
                    help="comma-separated worker counts for ours (default: 1,2,4,7 on a GPU, 2 on a CPU)")
    ap.add_argument("--fakes-per-original", type=int, default=0, metavar="K",
                    help="label the clips as REAL originals with K FAKE copies each, and compare reusing the "
                         "original's tracks with detecting every fake (default: off)")
    ap.add_argument("--executor", default="local", choices=["local", "ray"],
                    help="ray: in-process, --shard over 2 processes, and Ray with 1 and 2 actors on one local "
                         "cluster (its start and the actors' start reported apart) instead of stock vs ours")
    add_common_args(ap, ["stock", "ours"])
    args = ap.parse_args(argv)
    tune_host_allocator()  # as the jobs do: huge pages for large CPU tensors

    device = torch.device(args.device)
    on_gpu = device.type == "cuda"
    n_videos = args.videos or (60 if on_gpu else 12)
    worker_counts = [int(w) for w in (args.workers or ("1,2,4,7" if on_gpu else "2")).split(",")]
    work = tempfile.mkdtemp(prefix="dfdc_extract_bench_")
    if args.fakes_per_original > 0:
        paths = paired_clips(clips_or_exit(ap, args.src, None), n_videos, args.fakes_per_original,
                             os.path.join(work, "clips"))
    else:
        paths = repeated_clips(clips_or_exit(ap, args.src, None), n_videos, os.path.join(work, "clips"))
    from facenet_pytorch import MTCNN as FacenetMTCNN

    stock_mtcnn = FacenetMTCNN(keep_all=True, post_process=False, select_largest=False, thresholds=[0.6, 0.7, 0.7],
                               device=device)
    counter = {"n": 0}

    def fresh(name):
        counter["n"] += 1
        d = os.path.join(work, f"{name}-{counter['n']}")
        os.makedirs(d)
        return d

    def run_stock():
        out = fresh("stock")
        return {"clips": sum(stock_video(p, out, stock_mtcnn) for p in paths)}

    def run_ours(workers, reuse=None):
        inputs = [os.path.join(work, "clips")] if args.fakes_per_original > 0 else list(paths)
        cfg = ExtractConfig(inputs=inputs, out=fresh("ours"), device=str(device), workers=workers, progress=False,
                            contact_sheet=0, reuse_original=reuse)
        summary = run_extraction(cfg)
        peaks = []
        for root, _, files in os.walk(os.path.join(cfg.out, "videos")):
            for f in files:
                peak = json.load(open(os.path.join(root, f))).get("peak_gpu_mb")
                if peak is not None:
                    peaks.append(peak)
        summary["peak_gpu_mb"] = max(peaks) if peaks else None
        shutil.rmtree(cfg.out, ignore_errors=True)
        return summary

    def run_shards(n):
        """``--shard i/n`` in n processes at once (the static split), timed as one run."""
        out = fresh("shard")
        cmd = [sys.executable, "-m", "dfdc_fast.extract", *paths, "-o", out, "--device", str(device), "--no-progress",
               "--contact-sheet", "0"]
        procs = [subprocess.Popen(cmd + ["--shard", f"{i}/{n}"], stdout=subprocess.DEVNULL) for i in range(n)]
        if any(p.wait() for p in procs):
            raise RuntimeError("a shard failed")
        summary = json.load(open(os.path.join(out, "summary.json")))
        summary["startup_s"] = max(json.load(open(os.path.join(out, f"summary-{i}.json")))["startup_s"] for i in range(n))
        shutil.rmtree(out, ignore_errors=True)
        return summary

    def run_ray(actors):
        cfg = ExtractConfig(inputs=list(paths), out=fresh("ray"), device=str(device), progress=False, contact_sheet=0,
                            executor="ray", ray_actors=actors)
        summary = run_extraction(cfg)
        summary["cluster_start_s"] = ray_start_s
        shutil.rmtree(cfg.out, ignore_errors=True)
        return summary

    only = {s for s in args.only.split(",") if s}
    implementations = [("stock", run_stock)] + [(f"ours_w{w}", (lambda w=w: run_ours(w))) for w in worker_counts]
    if args.fakes_per_original > 0:
        w = worker_counts[0]
        implementations = [("stock", run_stock), ("ours_reuse_all", lambda: run_ours(w, "all")),
                           ("ours_detect_fakes", lambda: run_ours(w, "2d"))]
    ray_start_s = None
    if args.executor == "ray":
        from dfdc_fast.cluster import connect

        t0 = time.perf_counter()
        ray, _ = connect(None, num_cpus=os.cpu_count())  # one local cluster for every Ray run, its start apart
        ray_start_s = round(time.perf_counter() - t0, 3)
        implementations = [("inprocess", lambda: run_ours(0)), ("shard2", lambda: run_shards(2)),
                           ("ray_a1", lambda: run_ray(1)), ("ray_a2", lambda: run_ray(2))]
    results, partial = {}, None
    stop = WrittenOnStop("extract", device, results, args.out_dir, {"videos": n_videos})  # Ctrl-C/SIGTERM: what was measured
    env = environment(device)
    for name, fn in implementations:
        if only and name not in only and name.split("_")[0] not in only:
            continue
        print(f"{name}: {n_videos} videos x {args.repeats} run(s) ...", flush=True)
        outcomes = []

        def timed():
            outcomes.append(fn())

        t = time_runs(timed, repeats=args.repeats, warmup=0, device=device)
        last = outcomes[-1]
        row = {"available": True, **t.to_dict(), "videos_per_s": round(n_videos / t.median_s, 4),
               "clips": last.get("clips")}
        if name.startswith("ray"):
            row.update(cluster_start_s=ray_start_s, actors=last.get("actors"), actor_deaths=last.get("actor_deaths"),
                       videos_per_node=last.get("videos_per_node"))
        if name != "stock":
            row.update(workers=last.get("workers"), startup_s=[o.get("startup_s") for o in outcomes],
                       steady_videos_per_s=last.get("steady_videos_per_s"), stage_busy_s=last.get("stage_busy_s"),
                       peak_gpu_mb=last.get("peak_gpu_mb"), status_counts=last.get("status_counts"))
        if name != "stock" and last.get("stage_busy_s"):
            row["detect_track_s"] = last["stage_busy_s"].get("detect_track")
        results[name] = row
        print(f"{name:>8}: median {t.median_s:.2f} s  {row['videos_per_s']:.3f} videos/s  {row['clips']} clips",
              flush=True)
        partial = stop.path = write_result("extract", env, {"videos": n_videos}, results, args.out_dir, path=partial,
                                           complete=False)
    if "ours_reuse_all" in results and "ours_detect_fakes" in results:
        a, b = results["ours_reuse_all"], results["ours_detect_fakes"]
        results["reuse_all_vs_detect_fakes"] = {
            "videos_per_s_ratio": round(b["median_s"] / a["median_s"], 3),
            "detect_track_s_ratio": round(a["detect_track_s"] / b["detect_track_s"], 3)
            if a.get("detect_track_s") and b.get("detect_track_s") else None}
    if "inprocess" in results:
        for name, row in results.items():
            row["ratio_vs_inprocess"] = round(results["inprocess"]["median_s"] / row["median_s"], 3)
            steady, base = row.get("steady_videos_per_s"), results["inprocess"].get("steady_videos_per_s")
            row["steady_ratio_vs_inprocess"] = round(steady / base, 3) if steady and base else None
    if ray_start_s is not None:
        ray.shutdown()
    if "stock" in results:
        for name, row in results.items():
            if name.startswith("ours"):
                row["ratio_vs_stock"] = round(results["stock"]["median_s"] / row["median_s"], 3)
    shutil.rmtree(work, ignore_errors=True)
    inputs = {"files": sorted({os.path.basename(p).split("_", 1)[1] for p in paths}), "videos": n_videos,
              "fakes_per_original": args.fakes_per_original,
              "task": "every frame decoded; faces on every 10th at 0.5x; 256x256 H.264 clips per track and "
                      "150-frame chunk; 32 2D crops per video", "our_config": json.loads(json.dumps(
                          {k: v for k, v in vars(ExtractConfig(inputs=[], device=str(device))).items()
                           if k not in ("inputs", "out")}))}
    path = write_result("extract", env, inputs, results, args.out_dir,
                        extra={"unit": "videos_per_s", "repeats": args.repeats, "executor": args.executor,
                               **({"note": "a 2-core machine shared with other jobs while it ran: absolute figures "
                                           "are noise, the ratios less so"} if args.executor == "ray" else {})},
                        path=partial)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
