"""Decode benchmark: every frame of each clip to RGB uint8, per library, in one run.

Implementations (each skipped, with the reason, where its backend is unavailable):

* ``pyav``      stock PyAV loop, FFmpeg threads = --threads (the peer)
* ``opencv``    stock cv2.VideoCapture loop + BGR->RGB (a peer)
* ``ours_pyav`` dfdc_fast.io.read_video(decoder="pyav"): frames as one torch tensor
* ``ours_nvdec_1`` / ``ours_nvdec_N``  dfdc_fast NVDEC to RGB, 1 and N decoder sessions on
  threads of one process (the path before the engine)
* ``ours_proc_<backend>_N``  what the extraction engine does: N worker processes, each with
  its own decoder session, decoding to YUV 4:2:0 on the device (``read_raw``, no RGB
  conversion); N from --procs (GPU: nvdec with 1, 2, 4, 7; CPU: pyav with 1, 2). Pool
  start-up is timed apart (``startup_s``)
* ``ours_dali`` dfdc_fast DALI reader on the GPU
* ``torchcodec_cpu`` / ``torchcodec_cuda``  torchcodec's VideoDecoder, the decoder a PyTorch
  user would pick today (a peer; needs torchcodec and FFmpeg's libraries)

Reports frames/s and videos/s from the median of --repeats runs over the same clips, and
each implementation's ratio to ``pyav``. Writes JSON to benchmarks/results/.

    .venv/bin/python benchmarks/decode.py --videos 4 --repeats 3           # CPU
    python benchmarks/decode.py --device cuda --nvdec-workers 7             # GPU
"""
from __future__ import annotations

import argparse
import os
import sys
import traceback

import torch

from dfdc_fast.bench import DEFAULT_SAMPLES, add_common_args, clips_or_exit, environment, time_runs, write_result, WrittenOnStop
from dfdc_fast.runtime import tune_host_allocator
from dfdc_fast.io import read_header, read_videos



# Every implementation keeps all frames of a video in memory until the next video, as a
# user collecting a clip would: the peers as a list of arrays, ours as one tensor.


def decode_pyav(paths, threads):
    import av

    frames = 0
    for p in paths:
        with av.open(p) as c:
            s = c.streams.video[0]
            s.thread_type, s.thread_count = "AUTO", threads
            clip = [f.to_ndarray(format="rgb24") for f in c.decode(s)]
        frames += len(clip)
        del clip
    return frames


def decode_opencv(paths, threads):
    import cv2

    cv2.setNumThreads(threads)
    frames = 0
    for p in paths:
        cap = cv2.VideoCapture(p)
        clip = []
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            clip.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        cap.release()
        frames += len(clip)
        del clip
    return frames


def decode_ours(paths, decoder, device, workers):
    frames = 0
    for path, video in read_videos(paths, None, device=device, decoder=decoder, workers=workers, prefetch=1):
        if isinstance(video, Exception):
            raise video
        frames += len(video)
    return frames


_READER = None


def _proc_init(decoder, device, threads):
    global _READER
    from dfdc_fast.io import open_reader

    torch.set_num_threads(1)
    _READER = open_reader(decoder, device, **({"threads": threads} if decoder == "pyav" else {}))


def _proc_decode(path):
    raw = _READER.read_raw(path)
    if raw.data.is_cuda:
        torch.cuda.synchronize(raw.data.device)
    return len(raw)


class ProcessDecoder:
    """N worker processes with a reader each (the engine's layout), started outside the timing."""

    def __init__(self, decoder, device, workers):
        import concurrent.futures as cf
        import time

        import torch.multiprocessing as tmp

        t0 = time.perf_counter()
        threads = max(1, (os.cpu_count() or 1) // workers)
        self.pool = cf.ProcessPoolExecutor(workers, mp_context=tmp.get_context("spawn"), initializer=_proc_init,
                                           initargs=(decoder, str(device), threads))
        list(self.pool.map(_proc_noop, range(workers)))  # every worker has started
        self.startup_s = time.perf_counter() - t0

    def __call__(self, paths):
        return sum(self.pool.map(_proc_decode, paths))

    def close(self):
        self.pool.shutdown()


def _proc_noop(_):
    import time

    time.sleep(0.2)  # long enough that each worker takes one
    return _READER is not None


def decode_torchcodec(paths, device):
    from torchcodec.decoders import VideoDecoder

    frames = 0
    for p in paths:
        dec = VideoDecoder(p, device=str(device))
        clip = dec.get_frames_in_range(0, len(dec)).data
        if clip.is_cuda:
            torch.cuda.synchronize(clip.device)
        frames += clip.shape[0]
        del clip
    return frames


def torchcodec_missing(device) -> str | None:
    try:
        from torchcodec.decoders import VideoDecoder  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - ImportError, or its FFmpeg libraries missing
        return f"torchcodec unusable: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
    return None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", default=DEFAULT_SAMPLES, help="folder of clips (default: ../shared/data/dfdc_samples)")
    ap.add_argument("--videos", type=int, default=0, help="use the first N clips (default: all)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per implementation (default: %(default)s)")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="CPU decoder threads (default: all cores)")
    ap.add_argument("--nvdec-workers", type=int, default=7, help="concurrent NVDEC sessions for ours_nvdec_N (H100: 7 engines)")
    ap.add_argument("--procs", default=None, help="worker process counts for ours_proc_* (default: 1,2,4,7 on a GPU, 1,2 on a CPU)")
    add_common_args(ap, ["pyav", "opencv", "ours_pyav", "ours_nvdec_1", "ours_nvdec_N", "ours_proc_*", "ours_dali",
                         "torchcodec_cpu", "torchcodec_cuda"])
    args = ap.parse_args(argv)
    tune_host_allocator()  # as the jobs do: huge pages for large CPU tensors

    paths = clips_or_exit(ap, args.src, args.videos or None)
    infos = [read_header(p, count_frames=True) for p in paths]
    total_frames = sum(i.num_frames for i in infos)
    device = torch.device(args.device)
    gpu = device.type == "cuda"

    impls = {
        "pyav": (lambda: decode_pyav(paths, args.threads), None),
        "opencv": (lambda: decode_opencv(paths, args.threads), None),
        "ours_pyav": (lambda: decode_ours(paths, "pyav", "cpu", 1), None),
        "ours_nvdec_1": (lambda: decode_ours(paths, "nvdec", device, 1), None if gpu else "needs a CUDA device"),
        f"ours_nvdec_{args.nvdec_workers}": (lambda: decode_ours(paths, "nvdec", device, args.nvdec_workers),
                                             None if gpu else "needs a CUDA device"),
        "ours_dali": (lambda: decode_ours(paths, "dali", device, 1), None if gpu else "DALI has no CPU H.264 decoder"),
        "torchcodec_cpu": (lambda: decode_torchcodec(paths, "cpu"), torchcodec_missing("cpu")),
        "torchcodec_cuda": (lambda: decode_torchcodec(paths, device), None if gpu and not torchcodec_missing(device)
                            else (torchcodec_missing(device) or "needs a CUDA device")),
    }
    proc_backend = "nvdec" if gpu else "pyav"
    pools: dict = {}
    for n in [int(v) for v in (args.procs or ("1,2,4,7" if gpu else "1,2")).split(",")]:
        def run(n=n):
            if n not in pools:
                pools[n] = ProcessDecoder(proc_backend, device, n)
            return pools[n](paths)
        impls[f"ours_proc_{proc_backend}_{n}"] = (run, None)
    only = {s for s in args.only.split(",") if s}
    results = {}
    stop = WrittenOnStop("decode", device, results, args.out_dir)  # noqa: F841 - Ctrl-C/SIGTERM write what was measured
    for name, (fn, skip) in impls.items():
        if only and name not in only and not (name.startswith("ours_proc_") and "ours_proc_*" in only):
            continue
        if skip:
            results[name] = {"available": False, "reason": skip}
            print(f"{name:>16}: skipped ({skip})", flush=True)
            continue
        try:
            n = fn()  # warm-up run, also checks the frame count
            if n != total_frames:
                raise RuntimeError(f"decoded {n} frames, expected {total_frames}")
            t = time_runs(fn, repeats=args.repeats, warmup=0, device=device if "nvdec" in name or "dali" in name else None)
        except Exception as exc:  # a broken backend is reported, the others still run
            results[name] = {"available": False, "reason": f"{type(exc).__name__}: {exc}",
                             "traceback": traceback.format_exc(limit=3)}
            print(f"{name:>16}: FAILED {type(exc).__name__}: {exc}", flush=True)
            continue
        results[name] = {"available": True, **t.to_dict(), "frames_per_s": round(total_frames / t.median_s, 2),
                         "videos_per_s": round(len(paths) / t.median_s, 4)}
        if name.startswith("ours_proc_"):
            pool = pools.pop(int(name.rsplit("_", 1)[1]))
            results[name].update(startup_s=round(pool.startup_s, 3), output="YUV 4:2:0 on the device (no RGB)")
            pool.close()
        print(f"{name:>16}: median {t.median_s:.3f} s  {total_frames / t.median_s:8.1f} frames/s", flush=True)
    base = results.get("pyav", {})
    for name, r in results.items():
        if r.get("available") and base.get("available"):
            r["ratio_vs_pyav"] = round(base["median_s"] / r["median_s"], 3)
    inputs = {"files": [os.path.basename(p) for p in paths], "frames": total_frames,
              "sizes": sorted({f"{i.width}x{i.height}" for i in infos}), "codec": sorted({i.codec for i in infos}),
              "threads": args.threads, "task": "decode every frame of each clip to RGB uint8, holding the clip in memory"}
    path = write_result("decode", environment(device), inputs, results, args.out_dir,
                        extra={"unit": "frames_per_s", "repeats": args.repeats})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
