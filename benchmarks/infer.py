"""Inference benchmark: videos/s end to end for the seed ensemble, ours against the seed recipe.

Both score the same 1080p DFDC clips with the same untrained checkpoints of the Medics'
ensemble, in one run. The weights do not matter for speed; both load the same files.
The ensemble is seven 3D models (i3d, r3d_34, mc3_18, mc3_18_224, r2plus1d_18, plus i3d
and r2plus1d_18 again for the CutMix runs) and one 2D model (seresnext50_32x4d).

* ``stock``  the seed notebook's recipe from stock parts, one video at a time. OpenCV
  decodes the first 100 frames. facenet-pytorch MTCNN runs at a 480-px long side on every
  10th frame (then 960 px, then thresholds 0.5, for videos without a face). The Medics' tracker is numpy + skimage. Each face is cut per frame with
  cv2. Every model is called per face, and the clip and its flip in separate calls
  (fp32). 2D crops go through one call per face.
* ``ours``   ``dfdc_fast.infer.run_inference`` with its defaults: the engine's worker
  processes (NVDEC, MTCNN, tracking and cutting per video), the faces of a group of videos
  batched per model, bf16 and channels-last on GPUs that have it.
* ``ours_compile``  the same with ``--compile`` (fixed batch shapes, torch.compile); GPU only.

The clips are the sample clips repeated under distinct names up to --videos (100 on a GPU).
A run includes loading the checkpoints, for both; the JSON reports those fixed seconds
(loading, compiling, starting the workers) apart from the steady-state videos/s, the
seconds per stage, the GPU memory peak, and the projected time for 4,000 videos (the DFDC
public test set) with the fixed costs included. Medians of --repeats runs, ours/stock.

    .venv/bin/python benchmarks/infer.py                         # CPU: 4 videos, mc3_18 + seresnext50, 50 frames
    python benchmarks/infer.py --device cuda                     # GPU: 100 videos, the Medics' 8 models
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import traceback

import numpy as np
import torch

from dfdc_fast.bench import (DEFAULT_SAMPLES, add_common_args, clips_or_exit, environment, prepare, read_frames_cv2,
                             repeated_clips, time_runs, write_result, WrittenOnStop)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import track as track_bench  # noqa: E402  (the Medics' tracker rebuilt from stock parts)

ENSEMBLE = ["i3d", "r3d_34", "mc3_18", "mc3_18_224", "r2plus1d_18", "i3d", "r2plus1d_18", "seresnext50_32x4d"]


def make_checkpoints(models: list[str], folder: str) -> list[str]:
    """Untrained checkpoints of ``models`` (seeded), as training would write them."""
    from dfdc_fast.models import create_model, model_spec, save_checkpoint

    paths = []
    for k, name in enumerate(models):
        torch.manual_seed(k)
        path = os.path.join(folder, f"{k}_{name}.pth")
        save_checkpoint(path, create_model(name, num_classes=1), model_name=name, model_kwargs={"num_classes": 1},
                        config={"input_size": model_spec(name).input_size})
        paths.append(path)
    return paths


class Stock:
    """The seed notebook's per-video loop, on the same device and checkpoints."""

    def __init__(self, checkpoints, device, frames=100):
        from facenet_pytorch import MTCNN as FacenetMTCNN

        from dfdc_fast.models import load_model, model_spec

        self.device, self.frames, self.no_face = device, frames, 0
        self.mtcnn = FacenetMTCNN(keep_all=True, select_largest=False, post_process=False, device=device,
                                  thresholds=[0.8, 0.8, 0.9], factor=0.71)
        self.mtcnn_low = FacenetMTCNN(keep_all=True, select_largest=False, post_process=False, device=device,
                                      thresholds=[0.5, 0.5, 0.5], factor=0.71)
        self.members = []
        for p in checkpoints:
            model, ckpt = load_model(p, device=device)
            self.members.append((model.eval(), model_spec(ckpt.model_name)))

    def _prob(self, model, spec, x):
        from dfdc_fast.models import normalize

        with torch.no_grad():
            return torch.sigmoid(model(normalize(x, spec)).float()).reshape(-1)

    def video(self, path) -> float:
        import cv2

        frames, _ = read_frames_cv2(path, self.frames)
        if not frames:
            return 0.5
        h, w = frames[0].shape[:2]
        sampled = list(range(0, len(frames), 10))

        def rois_at(long_side, mtcnn, keep):
            scale = long_side / max(h, w)
            small = [cv2.resize(frames[i], (round(w * scale), round(h * scale))) for i in sampled]
            boxes, probs = mtcnn.detect(small)
            boxes = [np.zeros((0, 4)) if b is None else b / scale for b in boxes]
            return track_bench.medics_tracker(sampled, boxes, probs, (len(frames), h, w))[:keep]

        # the notebook's ladder: 480 px, then 960 px, then thresholds 0.5 keeping one face
        rois = rois_at(480, self.mtcnn, 5) or rois_at(960, self.mtcnn, 5) or rois_at(960, self.mtcnn_low, 1)
        if not rois:
            self.no_face += 1
            return 0.5
        model_scores = []
        for model, spec in self.members:
            face_scores = []
            for (f0, f1), (y0, y1), (x0, x1) in rois:
                y0, y1, x0, x1 = int(max(0, y0)), int(min(h, y1)), int(max(0, x0)), int(min(w, x1))
                if spec.kind == "3d":
                    side = max(y1 - y0, x1 - x0)
                    clip = []
                    for f in frames[f0:f1]:
                        sq = np.zeros((side, side, 3), np.uint8)
                        sq[: y1 - y0, : x1 - x0] = f[y0:y1, x0:x1]
                        clip.append(cv2.resize(sq, (256, 256), interpolation=cv2.INTER_AREA))
                    x = torch.from_numpy(np.stack(clip)).to(self.device).permute(3, 0, 1, 2)[None].float() / 255
                    if spec.input_size == 224:
                        x = x[..., 16:240, 16:240]
                    else:
                        x = torch.nn.functional.interpolate(x[0], size=(128, 128), mode="bilinear")[None][..., 8:120, 8:120]
                    p = (self._prob(model, spec, x) + self._prob(model, spec, x.flip(-1))) / 2
                else:
                    crops = []
                    for k, f in enumerate(frames[f0:min(f1, f0 + 32)]):
                        c = cv2.resize(f[y0:y1, x0:x1], (spec.input_size, spec.input_size), interpolation=cv2.INTER_CUBIC)
                        crops.append(c[:, ::-1] if k % 2 else c)
                    x = torch.from_numpy(np.stack(crops)).to(self.device).permute(0, 3, 1, 2).float() / 255
                    p = self._prob(model, spec, x).median()
                face_scores.append(float(p.mean()))
            model_scores.append(np.mean(face_scores))
        return float(np.clip(np.mean(model_scores), 0.001, 0.999))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", default=DEFAULT_SAMPLES, help="folder of DFDC clips (default: ../shared/data/dfdc_samples)")
    ap.add_argument("--videos", type=int, default=None, help="videos per run (default: 100 on a GPU, 4 on a CPU)")
    ap.add_argument("--models", default=None,
                    help="ensemble members (default: the Medics' 8 on a GPU, mc3_18,seresnext50_32x4d on a CPU)")
    ap.add_argument("--frames", type=int, default=None, help="first N frames per video (default: 100; 50 on a CPU)")
    ap.add_argument("--repeats", type=int, default=1, help="timed runs per implementation (default: %(default)s)")
    ap.add_argument("--workers", type=int, default=None, help="ours: engine worker processes (default: the job's)")
    add_common_args(ap, ["stock", "ours", "ours_compile"])
    args = ap.parse_args()
    device, only = prepare(args)
    gpu = device.type == "cuda"
    n_videos = args.videos or (100 if gpu else 4)
    frames = args.frames or (100 if gpu else 50)
    models = [m for m in (args.models or (",".join(ENSEMBLE) if gpu else "mc3_18,seresnext50_32x4d")).split(",") if m]
    work = tempfile.mkdtemp(prefix="bench-infer-")
    paths = repeated_clips(clips_or_exit(ap, args.src, None), n_videos, os.path.join(work, "videos"))
    checkpoints = make_checkpoints(models, work)
    results, last_summary, partial = {}, {}, None
    stop = WrittenOnStop("infer", device, results, args.out_dir, {"videos": n_videos, "models": models})
    env = environment(device)

    def run_ours(compile=False):
        from dfdc_fast.infer import InferConfig, run_inference

        out = tempfile.mkdtemp(prefix="out-", dir=work)
        nonlocal last_summary
        summary = run_inference(InferConfig(inputs=[os.path.join(work, "videos")], checkpoints=checkpoints, out=out,
                                            frames=frames, device=str(device), workers=args.workers, progress=False,
                                            compile=compile))
        last_summary = summary
        shutil.rmtree(out, ignore_errors=True)
        if summary["statuses"].get("ok", 0) == 0:
            raise RuntimeError(f"ours scored no video: {summary['statuses']}")
        return summary

    impls = {"stock": None, "ours": run_ours, "ours_compile": (lambda: run_ours(True)) if gpu else None}
    for name in impls:
        if only and name not in only:
            continue
        if name == "ours_compile" and not gpu:
            results[name] = {"available": False, "reason": "compiled models are measured on a GPU"}
            continue
        print(f"{name}: {n_videos} videos x {args.repeats} run(s), {len(models)} models, {frames} frames ...", flush=True)
        if gpu:
            torch.cuda.reset_peak_memory_stats(device)
        try:
            if name == "stock":  # loading the models is part of a run, as it is in ours
                stock, load_s = None, []

                def fn():
                    import time

                    nonlocal stock
                    t0 = time.perf_counter()
                    stock = Stock(checkpoints, device, frames)
                    load_s.append(time.perf_counter() - t0)
                    return [stock.video(p) for p in paths]
            else:
                fn = impls[name]
            t = time_runs(fn, repeats=args.repeats, warmup=0, device=device)
        except Exception as exc:  # one failing implementation is reported, the other still runs
            results[name] = {"available": False, "reason": f"{type(exc).__name__}: {exc}",
                             "traceback": traceback.format_exc(limit=4)}
            print(f"{name:>12}: FAILED {type(exc).__name__}: {exc}", flush=True)
            continue
        row = {"available": True, **t.to_dict(), "videos_per_s": round(n_videos / t.median_s, 4)}
        if gpu:
            row["peak_gpu_mb_main_process"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
        if name == "stock":  # videos without a face cost less: report them so the ratio can be judged
            fixed = sorted(load_s)[len(load_s) // 2]
            row.update(no_face_videos_per_run=stock.no_face, fixed_s=round(fixed, 3),
                       steady_videos_per_s=round(n_videos / (t.median_s - fixed), 4))
        else:
            s_ = last_summary
            row.update(statuses=s_.get("statuses"), stage_seconds_last_run=s_.get("stage_seconds"),
                       fixed_s=s_.get("fixed_s"), steady_videos_per_s=s_.get("steady_videos_per_s"),
                       workers=s_.get("workers"), peak_gpu_mb_worker=s_.get("worker_peak_gpu_mb"))
        if row.get("steady_videos_per_s"):
            row["projected_minutes_for_4000_videos"] = round((row["fixed_s"] + 4000 / row["steady_videos_per_s"]) / 60, 2)
        results[name] = row
        print(f"{name:>12}: median {t.median_s:.2f} s  {n_videos / t.median_s:.3f} videos/s "
              f"(steady {row.get('steady_videos_per_s')}, fixed {row.get('fixed_s')} s)", flush=True)
        partial = stop.path = write_result("infer", env, {"videos": n_videos, "models": models}, results, args.out_dir, path=partial,
                               complete=False)
    for name in ("ours", "ours_compile"):
        if results.get("stock", {}).get("available") and results.get(name, {}).get("available"):
            results[name]["ratio_vs_stock"] = round(results["stock"]["median_s"] / results[name]["median_s"], 3)
            results[name]["steady_ratio_vs_stock"] = round(
                results[name]["steady_videos_per_s"] / results["stock"]["steady_videos_per_s"], 3)
            print(f"  {name}/stock: {results[name]['ratio_vs_stock']}x", flush=True)
    shutil.rmtree(work, ignore_errors=True)
    inputs = {"files": sorted({os.path.basename(p)[4:] for p in paths}), "videos": n_videos, "models": models,
              "frames": frames, "task": "first N frames, MTCNN every 10th at 480 px, up to 5 faces, "
                                        "3D clips with flip TTA + 2D crops, mean over faces and models"}
    path = write_result("infer", env, inputs, results, args.out_dir,
                        extra={"unit": "videos_per_s", "repeats": args.repeats}, path=partial)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
