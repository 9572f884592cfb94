"""Face detection benchmark: our static-shape MTCNN against facenet-pytorch's stock MTCNN.

Both detect faces on the same frames, on the same device, in one run. Cases:

* ``960x540_<N>``: N frames at 0.5x of DFDC's 1080p (960x540, some 540x960), the Medics'
  export thresholds (0.6/0.7/0.7). Frames come as "videos" of 30: clip c, offset o ->
  frames o, o+10, ..., o+290, all clips at offset 0 first, then offset 1, ... so N=120 is
  every 10th frame of the first 4 clips (the earlier benchmark's frames).
* ``1080p_long480_<N>``: N full-resolution frames (the same videos at 1080p), detected at
  a longer side of 480 (270x480) with the Medics' inference thresholds (0.8/0.8/0.9), no
  max_faces or fallback, so both libraries do the same work. Ours gets the 1080p frames
  and resizes them itself; facenet-pytorch gets them resized by torch's area
  interpolation on the same device, inside its timed region.

Implementations (on --device; CPU rows come from a CPU run):

* ``facenet_<dev>``: facenet_pytorch.MTCNN(keep_all=True).detect on each video's frames
  as one batch (a uint8 tensor on the device), as the Medics called it (the peer)
* ``ours_<dev>``: dfdc_fast.detect.MTCNN.detect_many over --frames-per-call frames of
  videos per call, frames already on the device (as NVDEC leaves them)
* ``ours_cuda_from_host`` (CUDA only): the same from host frames, the copy timed

Reports frames/s from the median of --repeats timed runs (after one warm-up), the ratio
to facenet-pytorch in the same case, how often both found the same number of faces, and,
from a separate untimed run under dfdc_fast.bench.counting.OpCounter, kernel-launching
ops per frame and host syncs per call. On a CPU, ``ours`` also gets
``fake_cuda_gpu_config``: the same calls in the configuration a GPU runs (256 frames per
P-Net chunk, 8192 crops per forward, padded widths), on fake CUDA tensors with the host
reads replayed from the CPU run: its ops on CUDA tensors per frame (about one kernel launch
each) and host syncs per call. Writes JSON to benchmarks/results/.

    .venv/bin/python benchmarks/detect.py                   # CPU: 120 frames per case
    python benchmarks/detect.py --device cuda               # GPU: 120, 960, 3000 frames
"""
from __future__ import annotations

import argparse
import os
import sys
import traceback

import torch
import torch.nn.functional as F

from dfdc_fast.bench import DEFAULT_SAMPLES, add_common_args, clips_or_exit, environment, prepare, time_runs, write_result, WrittenOnStop
from dfdc_fast.bench.counting import OpCounter
from dfdc_fast.bench.fake_cuda import fake_cuda, record_fetches
from dfdc_fast.detect import MTCNN
from dfdc_fast.io import read_video

IMPLEMENTATIONS = ["facenet", "ours", "ours_cuda_from_host"]
EXPORT = (0.6, 0.7, 0.7)  # the Medics' export thresholds
INFERENCE = (0.8, 0.8, 0.9)  # the Medics' inference thresholds
EVERY = 10
PER_VIDEO = 30


def area_resize(frames: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> uint8 (N, h, w, 3) by area averaging, rounded (on the frames' device)."""
    x = F.interpolate(frames.permute(0, 3, 1, 2).float(), size=(h, w), mode="area")
    return x.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def load_videos(paths: list[str], n_frames: int, half: bool, per_video: int = PER_VIDEO) -> tuple[list[torch.Tensor], list[str]]:
    """At least ``n_frames`` frames as videos of ``per_video`` (30: see the module docstring),
    uint8 on the CPU, and the clips they come from."""
    n_videos = -(-n_frames // per_video)
    plan = [(c, o) for o in range(EVERY) for c in range(len(paths))][:n_videos]
    if len(plan) < n_videos:
        raise SystemExit(f"{n_frames} frames need {n_videos} videos of {per_video}; {len(paths)} clips give {len(plan)}")
    offsets: dict[int, list[int]] = {}
    for c, o in plan:
        offsets.setdefault(c, []).append(o)
    videos = {}
    for c, offs in offsets.items():
        wanted = sorted(o + EVERY * k for o in offs for k in range(per_video))
        v = read_video(paths[c], wanted)
        frames = v.frames if not half else area_resize(v.frames, v.frames.shape[1] // 2, v.frames.shape[2] // 2)
        got = v.indices.tolist()
        for o in offs:
            rows = [i for i, f in enumerate(got) if f % EVERY == o]
            videos[(c, o)] = frames[rows]
    return [videos[key] for key in plan], sorted(os.path.basename(paths[c]) for c in offsets)


def facenet_detect(detector, videos, resize_to=None):
    out = []
    for v in videos:
        if resize_to is not None:
            v = area_resize(v, *resize_to(v.shape[1], v.shape[2]))
        out.append(detector.detect(v)[0])
    return out


def ours_detect(detector, videos, per_call, to_device=None, read=True):
    out = []
    for i in range(0, len(videos), per_call):
        batch = videos[i:i + per_call]
        if to_device is not None:
            batch = [v.to(to_device, non_blocking=True) for v in batch]
        out.extend(detector.detect_many(batch))
    if read:  # results reach the host, as a user would read them (timed, not counted as the detector's)
        for d in out:
            d.counts.cpu()
    return out


def face_counts_facenet(result):
    return [0 if b is None else len(b) for video in result for b in video]


def face_counts_ours(result):
    return [int(c) for d in result for c in d.counts.cpu()]


def count_ops(fn, n_frames: int, n_calls: int) -> dict:
    """Kernel-launching ops and host syncs of one untimed run (OpCounter)."""
    with OpCounter() as c:
        fn()
    return {"kernels_per_frame": round(c.kernels / n_frames, 2), "syncs_per_call": round(c.syncs / n_calls, 2),
            "calls": n_calls, **c.summary()}


def fake_cuda_ops(make_detector, videos, per_call: int, reads: list, n_frames: int, n_calls: int) -> dict:
    """The same calls in the configuration a GPU runs (its chunk sizes, padded widths and
    layout), on fake CUDA tensors, the host reads answered from the CPU run's ``reads``:
    ops on CUDA tensors (about one kernel launch each) and host syncs, without a GPU."""
    with fake_cuda(replay=reads) as fc:
        detector = make_detector("cuda")
        fakes = [fc.tensor(v) for v in videos]
        before = fc.counter.kernels
        ours_detect(detector, fakes, per_call, read=False)
    kernels = fc.counter.kernels - before
    return {"kernels_per_frame": round(kernels / n_frames, 2), "syncs_per_call": round(fc.counter.syncs / n_calls, 2),
            "host_reads_per_call": round(fc.host_reads / n_calls, 2), "kernels": kernels,
            "ops": dict(fc.counter.ops.most_common(12))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", default=DEFAULT_SAMPLES, help="folder of clips (default: ../shared/data/dfdc_samples)")
    ap.add_argument("--sizes", default=None,
                    help="frames per 960x540 case, comma-separated (default: 120 on a CPU, 120,960,3000 on a GPU)")
    ap.add_argument("--long-side-frames", type=int, default=None,
                    help="frames of the 1080p long_side=480 case, 0 to skip (default: 120 on a CPU, 960 on a GPU)")
    ap.add_argument("--frames-per-call", type=int, default=480,
                    help="frames per detect_many call, whole videos of 30 (default: %(default)s)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per implementation (default: %(default)s)")
    ap.add_argument("--per-video", type=int, default=PER_VIDEO,
                    help="frames per video, every 10th (default: %(default)s; fewer for a dry run)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    add_common_args(ap, IMPLEMENTATIONS)
    args = ap.parse_args(argv)
    if not 1 <= args.per_video <= PER_VIDEO:
        ap.error(f"--per-video must be 1..{PER_VIDEO}")
    device, only = prepare(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    gpu = device.type == "cuda"
    dev = device.type
    sizes = [int(s) for s in (args.sizes or ("120,960,3000" if gpu else "120")).split(",") if s]
    long_frames = args.long_side_frames if args.long_side_frames is not None else (960 if gpu else 120)
    per_video = args.per_video
    per_call = max(1, args.frames_per_call // per_video)
    paths = clips_or_exit(ap, args.src, None)

    from facenet_pytorch import MTCNN as FacenetMTCNN

    def facenet(thresholds):
        return FacenetMTCNN(keep_all=True, post_process=False, select_largest=False, thresholds=list(thresholds),
                            device=device)

    cases = [(f"960x540_{n}", n, True, EXPORT, {}) for n in sizes]
    if long_frames:
        cases.append((f"1080p_long480_{long_frames}", long_frames, False, INFERENCE, {"long_side": 480}))

    results, inputs = {}, {"cases": {}, "frames_per_call": per_call * per_video, "threads": torch.get_num_threads()}
    stop = WrittenOnStop("detect", device, results, args.out_dir, inputs)  # noqa: F841 - Ctrl-C/SIGTERM write what was measured
    for case, n, half, thresholds, resize in cases:
        host, files = load_videos(paths, n, half, per_video)
        videos = [v.to(device) for v in host]
        n_frames = sum(len(v) for v in videos)
        n_calls = -(-len(videos) // per_call)
        def make_ours(dev, thresholds=thresholds, resize=resize):
            return MTCNN(dev, thresholds=thresholds, **resize)

        ours = make_ours(device)
        peer = facenet(thresholds)
        resize_to = ours.config.detector_size if resize else None
        impls = {  # timed function, face counts, calls, the detector's work alone (counted)
            "facenet": (lambda: facenet_detect(peer, videos, resize_to), face_counts_facenet, len(videos),
                        lambda: facenet_detect(peer, videos, resize_to)),
            "ours": (lambda: ours_detect(ours, videos, per_call), face_counts_ours, n_calls,
                     lambda: ours_detect(ours, videos, per_call, read=False)),
        }
        if gpu:
            impls["ours_cuda_from_host"] = (lambda: ours_detect(ours, host, per_call, device), face_counts_ours,
                                            n_calls, lambda: ours_detect(ours, host, per_call, device, read=False))
        inputs["cases"][case] = {
            "frames": n_frames, "videos": len(videos), "calls_of_ours": n_calls, "thresholds": thresholds,
            "frame_sizes": sorted({f"{v.shape[2]}x{v.shape[1]}" for v in videos}),
            "detector_size": "as given" if not resize else "longer side 480",
            "files": files,
        }
        counts = {}
        for impl, (fn, count, calls, work) in impls.items():
            if only and impl not in only:
                continue
            name = f"{case}/{impl if impl.endswith('from_host') else f'{impl}_{dev}'}"
            try:
                counts[impl] = count(fn())  # warm-up, and the faces to compare
                t = time_runs(fn, repeats=args.repeats, warmup=0, device=device)
                with record_fetches() as reads:
                    ops = count_ops(work, n_frames, calls)
                if impl == "ours" and not gpu:  # the GPU configuration's launches, counted on fake CUDA
                    ops["fake_cuda_gpu_config"] = fake_cuda_ops(make_ours, videos, per_call, reads, n_frames, calls)
            except Exception as exc:  # a broken implementation is reported, the others still run
                results[name] = {"available": False, "reason": f"{type(exc).__name__}: {exc}",
                                 "traceback": traceback.format_exc(limit=3)}
                print(f"{name:>40}: FAILED {type(exc).__name__}: {exc}", flush=True)
                continue
            results[name] = {"available": True, "device": dev, **t.to_dict(), "frames": n_frames,
                             "frames_per_s": round(n_frames / t.median_s, 2), "faces": sum(counts[impl]), **ops}
            print(f"{name:>40}: median {t.median_s:8.3f} s {n_frames / t.median_s:9.1f} frames/s  "
                  f"{ops['kernels_per_frame']:7.1f} kernels/frame  {ops['syncs_per_call']:7.1f} syncs/call", flush=True)
            if "fake_cuda_gpu_config" in ops:
                print(f"{name:>40}: GPU configuration on fake CUDA: "
                      f"{ops['fake_cuda_gpu_config']['kernels_per_frame']:.1f} kernels/frame", flush=True)
        peer_name = f"{case}/facenet_{dev}"
        for impl in counts:
            name = f"{case}/{impl if impl.endswith('from_host') else f'{impl}_{dev}'}"
            if "facenet" in counts and results.get(peer_name, {}).get("available") and results[name].get("available"):
                r = results[name]
                r[f"ratio_vs_facenet_{dev}"] = round(results[peer_name]["median_s"] / r["median_s"], 2)
                same = sum(a == b for a, b in zip(counts[impl], counts["facenet"]))
                r[f"same_face_count_as_facenet_{dev}"] = round(same / len(counts["facenet"]), 4)
                if impl != "facenet":
                    print(f"{name:>40}: {r[f'ratio_vs_facenet_{dev}']:.2f}x facenet-pytorch, same face count on "
                          f"{100 * r[f'same_face_count_as_facenet_{dev}']:.1f}% of frames", flush=True)
        del videos, host
    path = write_result("detect", environment(device), inputs, results, args.out_dir,
                        extra={"unit": "frames_per_s", "repeats": args.repeats})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
