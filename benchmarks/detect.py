"""Face detection benchmark: our batched MTCNN against facenet-pytorch's stock MTCNN.

Both detect on the same frames: every 10th frame of each clip, resized to 0.5x (960x540
for DFDC's 1080p), at the Medics' export thresholds (0.6/0.7/0.7), in one run.

* ``facenet_cpu`` / ``facenet_cuda``  facenet_pytorch.MTCNN(keep_all=True).detect on each
  video's frames as one numpy batch, as the Medics called it (the peer)
* ``ours_cpu`` / ``ours_cuda``  dfdc_fast.detect.MTCNN.detect_many over --videos-per-batch
  videos at once; on CUDA the frames are already on the GPU, as NVDEC leaves them
* ``ours_cuda_from_host``  the same, starting from host frames (the copy is timed)

Reports frames/s from the median of --repeats runs, each implementation's ratio to the
facenet-pytorch run on the same device, and how often both found the same number of
faces. Writes JSON to benchmarks/results/.

    .venv/bin/python benchmarks/detect.py --videos 4          # CPU
    python benchmarks/detect.py --device cuda --videos 20     # GPU: CPU and CUDA rows
"""
from __future__ import annotations

import argparse
import os
import sys
import traceback

import torch
import torch.nn.functional as F

from dfdc_fast.bench import DEFAULT_SAMPLES, add_common_args, clips_or_exit, environment, time_runs, write_result
from dfdc_fast.runtime import tune_host_allocator
from dfdc_fast.detect import MTCNN
from dfdc_fast.io import read_video
from dfdc_fast.io.selectors import Every

THRESHOLDS = (0.6, 0.7, 0.7)


def load_frames(paths, every):
    """Sampled frames of each clip at 0.5x, uint8 (N, H, W, 3) on the CPU."""
    out = []
    for p in paths:
        frames = read_video(p, Every(every)).frames
        x = F.interpolate(frames.permute(0, 3, 1, 2).float(), scale_factor=0.5, mode="area")
        out.append(x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous())
    return out


def facenet_detect(detector, videos_np):
    return [detector.detect(v)[0] for v in videos_np]


def ours_detect(detector, videos, per_batch, to_device=None):
    out = []
    for i in range(0, len(videos), per_batch):
        batch = videos[i : i + per_batch]
        if to_device is not None:
            batch = [v.to(to_device, non_blocking=True) for v in batch]
        out.extend(detector.detect_many(batch))
    for d in out:
        d.counts.cpu()  # results reach the host, as a user would read them
    return out


def face_counts_facenet(result):
    return [0 if b is None else len(b) for video in result for b in video]


def face_counts_ours(result):
    return [int(c) for d in result for c in d.counts.cpu()]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", default=DEFAULT_SAMPLES, help="folder of clips (default: ../shared/data/dfdc_samples)")
    ap.add_argument("--videos", type=int, default=4, help="use the first N clips (default: %(default)s)")
    ap.add_argument("--every", type=int, default=10, help="detect on every n-th frame (default: %(default)s)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per implementation (default: %(default)s)")
    ap.add_argument("--videos-per-batch", type=int, default=8, help="videos per detect_many call (default: %(default)s)")
    ap.add_argument("--skip-cpu", action="store_true", help="on a GPU machine, time only the CUDA rows")
    add_common_args(ap)
    args = ap.parse_args(argv)
    tune_host_allocator()  # as the jobs do: huge pages for large CPU tensors

    paths = clips_or_exit(ap, args.src, args.videos)
    videos = load_frames(paths, args.every)
    videos_np = [v.numpy() for v in videos]
    n_frames = sum(len(v) for v in videos)
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    from facenet_pytorch import MTCNN as FacenetMTCNN

    def facenet(dev):
        return FacenetMTCNN(keep_all=True, post_process=False, select_largest=False, thresholds=list(THRESHOLDS), device=dev)

    impls = {}
    if not (gpu and args.skip_cpu):
        fc, oc = facenet("cpu"), MTCNN("cpu", thresholds=THRESHOLDS)
        impls["facenet_cpu"] = ("cpu", lambda: facenet_detect(fc, videos_np), face_counts_facenet)
        impls["ours_cpu"] = ("cpu", lambda: ours_detect(oc, videos, args.videos_per_batch), face_counts_ours)
    if gpu:
        fg, og = facenet(device), MTCNN(device, thresholds=THRESHOLDS)
        on_gpu = [v.to(device) for v in videos]
        impls["facenet_cuda"] = ("cuda", lambda: facenet_detect(fg, videos_np), face_counts_facenet)
        impls["ours_cuda"] = ("cuda", lambda: ours_detect(og, on_gpu, args.videos_per_batch), face_counts_ours)
        impls["ours_cuda_from_host"] = ("cuda", lambda: ours_detect(og, videos, args.videos_per_batch, device),
                                        face_counts_ours)

    results, counts = {}, {}
    for name, (where, fn, count) in impls.items():
        try:
            counts[name] = count(fn())  # warm-up and the result to compare
            t = time_runs(fn, repeats=args.repeats, warmup=0, device=device if where == "cuda" else None)
        except Exception as exc:  # a broken implementation is reported, the others still run
            results[name] = {"available": False, "reason": f"{type(exc).__name__}: {exc}",
                             "traceback": traceback.format_exc(limit=3)}
            print(f"{name:>20}: FAILED {type(exc).__name__}: {exc}", flush=True)
            continue
        results[name] = {"available": True, "device": where, **t.to_dict(),
                         "frames_per_s": round(n_frames / t.median_s, 2), "faces": sum(counts[name])}
        print(f"{name:>20}: median {t.median_s:.3f} s  {n_frames / t.median_s:9.1f} frames/s", flush=True)
    for name, r in results.items():
        peer = f"facenet_{r.get('device')}"
        if r.get("available") and results.get(peer, {}).get("available"):
            r[f"ratio_vs_{peer}"] = round(results[peer]["median_s"] / r["median_s"], 2)
            same = sum(a == b for a, b in zip(counts[name], counts[peer]))
            r[f"same_face_count_as_{peer}"] = round(same / len(counts[peer]), 4)
    h, w = videos[0].shape[1:3]
    inputs = {"files": [os.path.basename(p) for p in paths], "frames": n_frames, "every": args.every,
              "frame_sizes": sorted({f"{v.shape[2]}x{v.shape[1]}" for v in videos}), "thresholds": THRESHOLDS,
              "videos_per_batch": args.videos_per_batch,
              "task": f"detect faces on every {args.every}th frame at 0.5x (e.g. {w}x{h}), boxes to the host"}
    path = write_result("detect", environment(device), inputs, results, args.out_dir,
                        extra={"unit": "frames_per_s", "repeats": args.repeats})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
