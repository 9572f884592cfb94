"""Training benchmark: clips/s and GPU busy per 3D model, our loop against a plain fp32 loop,
same clips, same windows, same number of steps.

* ``plain``       what the seed repos ran: a torch DataLoader whose CPU workers decode each
  window with PyAV from frame 0 and augment it on the CPU (the same per-clip crop, flip and
  brightness/contrast as ours), then fp32 forward/backward with Adam, contiguous tensors.
* ``ours_dali``   ``dfdc_fast.train.train`` with ``loader: dali`` (DALI ``fn.decoders.video``
  fed each clip's window; NVDEC on a GPU).
* ``ours_nvdec``  ... with ``loader: nvdec`` (decoder processes, one NVDEC session each,
  filling a ring of batches in GPU memory).
* ``ours_pyav``   ... with ``loader: pyav`` (windows decoded on CPU workers from their keyframe);
  the only "ours" that runs on a CPU.

All of ours: augmentation on the device, bf16 autocast on GPUs that have it, channels-last
3D, fused AdamW/Adam, no host sync per step. Data: the extraction output of ``--src`` (the
DFDC sample clips by default; extracted once into ``--cache``), its clips listed again under
distinct names (symlinks) until there are ``--min-clips`` of them.

A run is one epoch of ``--steps`` timed steps after one untimed first step (worker start-up,
cuDNN autotuning: reported apart as ``first_step_s``); a short warm-up run precedes the timed
runs; medians of ``--repeats`` runs; ratios against plain from the same process. "GPU busy"
is the mean NVML utilisation (sampled every 50 ms) over the timed runs: the share of time a
kernel ran, so a loop that waits for data scores low. Also recorded: decoded frames per
delivered frame (measured for PyAV; for DALI and NVDEC, which do not report it, what a
keyframe-seeking decoder needs), host syncs per training step (OpCounter), and with
``--keyints`` the clip size and window decode cost for several keyframe intervals.

    .venv/bin/python benchmarks/train.py --models r2plus1d_18 --steps 4 --batch-size 2 --input-size 64   # CPU
    python benchmarks/train.py --device cuda                                                             # GPU
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback

import numpy as np
import torch
import torch.nn.functional as F

from dfdc_fast.bench import DEFAULT_SAMPLES, WrittenOnStop, add_common_args, environment, prepare, write_result

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
DEMO = os.path.join(REPO, "dfdc_fast", "assets", "demo")
MODELS = ["i3d", "r2plus1d_18"]
IMPLS = ["plain", "ours_dali", "ours_nvdec", "ours_pyav"]


class UtilSampler:
    """Mean GPU utilisation (NVML, percent) over the time it runs; None without a GPU/NVML."""

    def __init__(self, device: torch.device, every_s: float = 0.05):
        self.device, self.every_s, self.samples = device, every_s, []
        self._stop = threading.Event()
        self._thread = None

    def __enter__(self):
        if self.device.type == "cuda":
            try:
                torch.cuda.utilization(self.device)
            except Exception:  # NVML missing: report None rather than guess
                return self
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def _run(self):
        while not self._stop.wait(self.every_s):
            self.samples.append(torch.cuda.utilization(self.device))

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread:
            self._thread.join()

    @property
    def mean(self) -> float | None:
        return round(statistics.mean(self.samples), 1) if self.samples else None


# ---------------------------------------------------------------------------------------------
# data


def _default_src() -> str:
    return DEFAULT_SAMPLES if os.path.isfile(os.path.join(DEFAULT_SAMPLES, "metadata.json")) else DEMO


def extracted(src: str, cache: str, device: torch.device, keyint: int) -> str:
    """The extraction output of ``src`` in ``cache`` (the job resumes: a finished folder is reused)."""
    key = hashlib.sha1(f"{os.path.realpath(src)}|{keyint}".encode()).hexdigest()[:10]
    out = os.path.join(cache, f"faces-{key}-k{keyint}")
    if os.path.exists(os.path.join(out, "summary.json")) and os.path.exists(os.path.join(out, "index.csv")):
        return out
    cmd = [sys.executable, "-m", "dfdc_fast.extract", os.path.abspath(src), "-o", out, "--device", str(device), "--clip-keyint",
           str(keyint), "--no-progress", "--contact-sheet", "0"]
    print("extracting:", " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if r.returncode not in (0, 1) or not os.path.exists(os.path.join(out, "index.csv")):  # 1: some video not ok
        raise RuntimeError(f"extraction failed ({r.returncode}):\n{r.stderr[-3000:]}")
    print(f"extracted in {time.perf_counter() - t0:.0f} s", flush=True)
    return out


def repeated(data: str, min_clips: int) -> tuple[str, int, int]:
    """A folder whose index lists every ok clip of ``data`` as many times as it takes to reach
    ``min_clips``, each copy under its own name (a symlink) and video, so caches and the
    epoch balance treat the copies as distinct clips. Returns (folder, clips, distinct clips)."""
    with open(os.path.join(data, "index.csv"), newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("clip") and r.get("status") == "ok"
                and r.get("label", "").upper() in ("REAL", "FAKE")]
    if not rows:
        raise RuntimeError(f"{data}/index.csv lists no labelled ok clip")
    copies = max(1, -(-min_clips // len(rows)))
    if copies == 1:
        return data, len(rows), len(rows)
    out = f"{data}-x{copies}"
    index = os.path.join(out, "index.csv")
    if not os.path.exists(index):
        tmp_rows = []
        for c in range(copies):
            for r in rows:
                name = f"r{c:02d}_{os.path.basename(r['clip'])}"
                rel = os.path.join("clips", r["label"].upper(), name)
                os.makedirs(os.path.join(out, os.path.dirname(rel)), exist_ok=True)
                link = os.path.join(out, rel)
                if not os.path.lexists(link):
                    os.symlink(os.path.realpath(os.path.join(data, r["clip"])), link)
                tmp_rows.append({**r, "clip": rel, "video": f"r{c:02d}_{r['video']}",
                                 "original": f"r{c:02d}_{r['original']}" if r.get("original") else ""})
        with open(index + ".tmp", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(tmp_rows[0]))
            w.writeheader()
            w.writerows(tmp_rows)
        os.replace(index + ".tmp", index)
    return out, copies * len(rows), len(rows)


# ---------------------------------------------------------------------------------------------
# the plain loop


class _PlainDataset(torch.utils.data.Dataset):
    """Decode from frame 0 + augment on the CPU, one clip per item (the seed repos' loaders)."""

    def __init__(self, items, size, augment_options, seed):
        from dfdc_fast.augment import ClipAugment

        self.items, self.seed = items, seed
        self.augment = ClipAugment(size, **augment_options)

    def __len__(self):
        return len(self.items)

    def __getitem__(self, position):
        from dfdc_fast.io import Indices, read_video

        it = self.items[position]
        clip = read_video(it.path, Indices(list(it.window)), decoder="pyav").frames
        x = clip.permute(3, 0, 1, 2)[None].float().div_(255)
        g = torch.Generator().manual_seed(self.seed + position)
        return self.augment(x, generator=g)[0], torch.tensor(it.label)


def epoch_items(data: str, steps: int, batch: int, frames: int, seed: int = 0):
    """The items ``dfdc_fast.train.train`` draws for epoch 0 of ``steps`` steps (balance "all")."""
    from dfdc_fast.train import read_clip_index
    from dfdc_fast.train.loaders import plan_epoch
    from dfdc_fast.train.loop import epoch_order

    samples = read_clip_index(data, "3d")
    order = epoch_order(samples, 0, steps * batch, seed=seed, mode="all")
    return plan_epoch(samples, order, frames=frames, batch_size=batch, train=True, seed=seed, epoch=0).items


def plain_run(model_name, data, *, frames, size, batch, steps, workers, augment, device) -> dict:
    """``steps`` timed steps of the plain loop after one untimed first step."""
    from dfdc_fast.models import create_model, model_spec, normalize

    spec = model_spec(model_name)
    torch.manual_seed(0)
    model = create_model(model_name, num_classes=1).to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    items = epoch_items(data, steps + 1, batch, frames)
    loader = torch.utils.data.DataLoader(_PlainDataset(items, size, augment, 0), batch_size=batch,
                                         num_workers=workers, pin_memory=device.type == "cuda", drop_last=True,
                                         prefetch_factor=2 if workers else None)
    started, t0 = time.perf_counter(), None
    for i, (x, y) in enumerate(loader):
        if i == 1:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
        x, y = normalize(x.to(device), spec), y.to(device)
        loss = F.binary_cross_entropy_with_logits(model(x).reshape(-1), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    if t0 is None:
        raise RuntimeError("fewer than two batches: nothing timed")
    decoded = sum(max(it.window) + 1 for it in items)  # read_video decodes from frame 0
    return {"steady_s": time.perf_counter() - t0, "first_step_s": t0 - started, "decoder": "pyav-cpu-workers-from-frame-0",
            "decoded_per_delivered": round(decoded / (len(items) * frames), 4)}


# ---------------------------------------------------------------------------------------------
# ours


def ours_run(model_name, data, *, frames, size, batch, steps, workers, augment, device, loader, config) -> dict:
    """One epoch of ``steps + 1`` steps through ``dfdc_fast.train.train``; its first step is
    timed apart by the loop itself."""
    from dfdc_fast.train import train

    out = tempfile.mkdtemp(prefix="bench-train-ours-")
    cfg = config.__class__(**{**config.to_dict(), "model": model_name, "data": data, "frames": frames,
                              "input_size": size, "batch_size": batch, "epochs": 1, "max_steps_per_epoch": steps + 1,
                              "loader": loader, "workers": workers, "val_fraction": 0.0, "val_parts": [],
                              "balance": "all", "augment": augment, "out": out, "progress": False, "resume": False,
                              "seed": 0, "log_every": max(steps, 1), "accumulate": 1, "pretrained": None})
    result = train(cfg, device=device)
    row = result.metrics[-1]
    return {"steady_s": row["steady_s"], "first_step_s": row["first_step_s"], "decoder": loader, "decode": result.decode,
            "decoded_per_delivered": result.decode.get("decoded_per_delivered")
            or result.decode.get("expected_decoded_per_delivered"),
            "decoded_per_delivered_kind": "measured" if result.decode.get("decoded_per_delivered") else
            "expected from the keyframes (decoder does not report)"}


def syncs_per_step(config, *, frames, size, batch, device, steps=20, log_every=10) -> dict:
    """Host syncs of the training step, counted with OpCounter over ``steps`` steps on random
    uint8 clips, the loss read every ``log_every`` steps (as the loop does)."""
    from dfdc_fast.bench.counting import OpCounter
    from dfdc_fast.train.loop import build_step

    cfg = config.__class__(**{**config.to_dict(), "frames": frames, "input_size": size, "batch_size": batch,
                              "accumulate": 1, "pretrained": None})
    step, _ = build_step(cfg, device, total_steps=steps + 2)
    step.begin_epoch(seed=0, epoch=0)
    g = torch.Generator().manual_seed(0)
    clips = torch.randint(0, 256, (batch, frames, 128, 128, 3), dtype=torch.uint8, generator=g).to(device)
    labels = (torch.arange(batch) % 2).float().to(device)
    step(clips, labels)
    with OpCounter() as counter:
        for i in range(steps):
            step(clips, labels)
            if (i + 1) % log_every == 0:
                step.read()
    return {"steps": steps, "log_every": log_every, "syncs": counter.syncs, "syncs_per_step": counter.syncs / steps,
            "sync_ops": dict(counter.sync_ops), "kernels_per_step": round(counter.kernels / steps, 1),
            "augment": dict(cfg.augment), "cutmix": cfg.cutmix, "optimizer": cfg.optimizer, "amp": cfg.amp}


def decode_ratio(data: str, frames: int, windows: int) -> dict:
    """Decoded per delivered frame over ``windows`` training windows of the benchmark data
    (the windows of ``train``'s first epoch), decoded on the CPU from their keyframe; and what
    decoding from frame 0 (the plain loop, and our loader before issue #14) costs."""
    from dfdc_fast.train.loaders import read_item
    from dfdc_fast.train.windows import DecodeStats

    items = epoch_items(data, windows, 1, frames)
    stats = DecodeStats()
    t0 = time.perf_counter()
    for it in items:
        _, decoded, expected, misses, _ = read_item(it)
        stats.add(decoded, frames, expected, misses)
    elapsed = time.perf_counter() - t0
    from_start = sum(max(it.window) + 1 for it in items)
    return {**stats.to_dict(), "frames_per_window": frames, "from_frame_0_decoded_per_delivered":
            round(from_start / (len(items) * frames), 4), "cpu_ms_per_window": round(1000 * elapsed / len(items), 2)}


# ---------------------------------------------------------------------------------------------
# keyframe interval sweep


def keyint_sweep(data: str, keyints, lengths, clips: int, windows: int, workdir: str) -> dict:
    """Re-encode ``clips`` extracted clips at each keyframe interval (the extraction's encoder,
    CRF 18) and measure bytes per frame and the CPU cost of random training windows. The
    intervals take turns on every window, so a busy machine slows them alike."""
    from dfdc_fast.crops.encode import write_mp4
    from dfdc_fast.io import read_video
    from dfdc_fast.train import read_clip_index
    from dfdc_fast.train.windows import decode_window, expected_decoded, packet_index

    samples = [s for s in read_clip_index(data, "3d") if s.frames >= max(lengths)][:clips]
    if not samples:
        raise RuntimeError(f"no clip of {max(lengths)} frames or more in {data}")
    decoded_clips = [read_video(s.path).frames.numpy() for s in samples]
    total_frames = int(sum(c.shape[0] for c in decoded_clips))
    paths = {}
    for k in keyints:
        paths[k] = []
        for ci, clip in enumerate(decoded_clips):
            p = os.path.join(workdir, f"k{k}", f"{ci:03d}.mp4")
            write_mp4(p, clip, fps=30, crf=18, keyint=k)
            paths[k].append(p)
            decode_window(p, range(0, min(lengths)))  # page cache and packet index
    rng = random.Random(0)
    out = {"clips": len(samples), "frames": total_frames, "windows_per_clip": windows, "crf": 18, "results": {}}
    for k in keyints:
        nbytes = sum(os.path.getsize(p) for p in paths[k])
        out["results"][str(k)] = {"bytes_per_frame": round(nbytes / total_frames, 1),
                                  "max_gop": max(packet_index(p).max_gop() for p in paths[k])}
    for L in lengths:
        plan = [(ci, rng.randrange(0, c.shape[0] - L + 1)) for ci, c in enumerate(decoded_clips) for _ in range(windows)]
        times = {k: [] for k in keyints}
        decoded = {k: 0 for k in keyints}
        for w, (ci, a) in enumerate(plan):
            turn = keyints[w % len(keyints):] + keyints[:w % len(keyints)]
            for k in turn:
                t0 = time.perf_counter()
                _, d, _ = decode_window(paths[k][ci], range(a, a + L))
                times[k].append(time.perf_counter() - t0)
                decoded[k] += d
        for k in keyints:
            exact = np.mean([np.mean([expected_decoded(packet_index(p), range(a, a + L))
                                      for a in range(0, c.shape[0] - L + 1)])
                             for p, c in zip(paths[k], decoded_clips)])
            out["results"][str(k)][f"window_{L}"] = {
                "ms_per_window_median": round(1000 * statistics.median(times[k]), 2),
                "ms_per_delivered_frame": round(1000 * sum(times[k]) / (len(plan) * L), 3),
                "decoded_per_delivered": round(decoded[k] / (len(plan) * L), 4),
                "decoded_per_delivered_expected": round(float(exact) / L, 4)}
    base = out["results"].get("250")
    for k, e in out["results"].items():
        if base:
            e["size_vs_250"] = round(e["bytes_per_frame"] / base["bytes_per_frame"], 3)
        print(f"keyint {k:>4}: {e}", flush=True)
    return out


# ---------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", help="an extraction output folder (default: extract --src into --cache)")
    ap.add_argument("--src", default=None, help="videos to extract when --data is not given "
                                                "(default: the DFDC sample clips, else the demo set)")
    ap.add_argument("--cache", default=os.path.join(os.path.expanduser("~"), ".cache", "dfdc_fast", "bench-train"),
                    help="where extractions are kept between runs (default: %(default)s)")
    ap.add_argument("--clip-keyint", type=int, default=16, help="extraction keyframe interval (default: %(default)s)")
    ap.add_argument("--min-clips", type=int, default=200, help="list clips again until there are this many (default: %(default)s)")
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated (default: %(default)s)")
    ap.add_argument("--steps", type=int, default=20, help="timed steps per run (default: %(default)s)")
    ap.add_argument("--repeats", type=int, default=2, help="timed runs per implementation (default: %(default)s)")
    ap.add_argument("--batch-size", type=int, help="default: the model's seed config")
    ap.add_argument("--frames", type=int, help="default: the model's seed config")
    ap.add_argument("--input-size", type=int, help="default: the model's seed config")
    ap.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 2),
                    help="plain and ours_pyav: DataLoader processes; ours_nvdec: decoder processes; "
                         "ours_dali: DALI threads (default: %(default)s)")
    ap.add_argument("--sync-steps", type=int, default=20, help="steps counted for host syncs (0: skip)")
    ap.add_argument("--ratio-windows", type=int, default=200,
                    help="training windows decoded on the CPU to measure decoded/delivered frames (0: skip)")
    ap.add_argument("--keyints", default=None,
                    help="keyframe intervals to sweep, e.g. 8,16,32,250 (default: that on a CPU, none on a GPU)")
    ap.add_argument("--sweep-clips", type=int, default=12)
    ap.add_argument("--sweep-windows", type=int, default=6, help="random windows per clip and length")
    add_common_args(ap, IMPLS)
    args = ap.parse_args()
    device, only = prepare(args)
    default_impls = ["plain", "ours_dali", "ours_nvdec"] if device.type == "cuda" else ["plain", "ours_pyav"]
    impls = [i for i in IMPLS if i in only] if only else default_impls
    from dfdc_fast.train import load_config, read_clip_index

    t_setup = time.perf_counter()
    src = args.src or _default_src()
    base = args.data or extracted(src, args.cache, device, args.clip_keyint)
    data, n_clips, distinct = repeated(base, args.min_clips)
    samples = read_clip_index(data, "3d")
    setup_s = time.perf_counter() - t_setup
    print(f"data: {data}: {len(samples)} clips ({distinct} distinct), setup {setup_s:.0f} s", flush=True)

    results, settings = {}, {}
    stop = WrittenOnStop("train", device, results, args.out_dir, {"settings": settings})  # noqa: F841 - Ctrl-C/SIGTERM
    for name in [m for m in args.models.split(",") if m]:
        cfg = load_config(name)
        frames, size = args.frames or cfg.frames, args.input_size or cfg.input_size
        batch = args.batch_size or cfg.batch_size
        aug = {k: v for k, v in cfg.augment.items() if k in ("scale", "ratio", "hflip", "brightness_contrast_p")}
        settings[name] = {"frames": frames, "input_size": size, "batch_size": batch, "augment": aug,
                          "amp": cfg.amp, "optimizer": cfg.optimizer}
        results[name] = {}
        for impl in impls:
            def run(steps, impl=impl):
                common = dict(frames=frames, size=size, batch=batch, steps=steps, workers=args.workers,
                              augment=aug, device=device)
                if impl == "plain":
                    return plain_run(cfg.model, data, **common)
                return ours_run(cfg.model, data, loader=impl.split("_", 1)[1], config=cfg, **common)

            try:
                run(2)  # warm-up: cuDNN autotuning, allocator, page cache
                runs = []
                with UtilSampler(device) as util:
                    for _ in range(args.repeats):
                        runs.append(run(args.steps))
                times = [r["steady_s"] for r in runs]
                med = statistics.median(times)
                if not med > 0:
                    raise RuntimeError(f"no training step timed (run times {times})")
                entry = {"available": True, "runs_s": [round(t, 4) for t in times], "median_s": round(med, 4),
                         "clips_per_s": round(args.steps * batch / med, 2), "gpu_busy_percent": util.mean,
                         "first_step_s": [round(r["first_step_s"], 3) for r in runs],
                         **{k: v for k, v in runs[-1].items() if k not in ("steady_s", "first_step_s")}}
                results[name][impl] = entry
                print(f"{name:>12} {impl:>10}: {entry['clips_per_s']:8.2f} clips/s  GPU busy {util.mean}%  "
                      f"decoded/delivered {entry.get('decoded_per_delivered')}  first step {entry['first_step_s']} s",
                      flush=True)
            except Exception as exc:  # one failing implementation is reported, the rest still run
                results[name][impl] = {"available": False, "reason": f"{type(exc).__name__}: {exc}",
                                       "traceback": traceback.format_exc(limit=6)}
                print(f"{name:>12} {impl:>10}: FAILED {type(exc).__name__}: {exc}", flush=True)
        p = results[name].get("plain", {})
        for impl, o in results[name].items():
            if impl != "plain" and p.get("available") and o.get("available"):
                o["ratio_vs_plain"] = round(p["median_s"] / o["median_s"], 2)
                print(f"{name:>12} {impl:>10}/plain: {o['ratio_vs_plain']}x", flush=True)
        if args.ratio_windows:
            r = decode_ratio(data, frames, args.ratio_windows)
            results[name]["decode_ratio"] = r
            print(f"{name:>12} decoded/delivered over {r['windows']} windows of {frames}: {r['decoded_per_delivered']} "
                  f"(from frame 0: {r['from_frame_0_decoded_per_delivered']}; seek misses {r['seek_misses']})", flush=True)
        if args.sync_steps:  # counts do not depend on the clip size: count on small clips
            for key, augment in (("host_syncs", aug), ("host_syncs_config_augment", cfg.augment)):
                try:
                    counted = cfg.__class__(**{**cfg.to_dict(), "augment": dict(augment)})
                    r = syncs_per_step(counted, frames=8, size=32, batch=2, device=device, steps=args.sync_steps)
                    results[name][key] = r
                    print(f"{name:>12} host syncs per step ({key}): {r['syncs_per_step']:.3f} {r['sync_ops']}", flush=True)
                except Exception as exc:
                    results[name][key] = {"available": False, "reason": f"{type(exc).__name__}: {exc}"}

    keyints = args.keyints if args.keyints is not None else ("" if device.type == "cuda" else "8,16,32,250")
    extra = {"unit": "clips_per_s", "repeats": args.repeats}
    if keyints:
        with tempfile.TemporaryDirectory(prefix="bench-keyint-") as work:
            extra["keyint_sweep"] = keyint_sweep(base, [int(k) for k in keyints.split(",")], [32, 64],
                                                 args.sweep_clips, args.sweep_windows, work)
    inputs = {"data": data, "src": args.data or src, "clips": len(samples), "distinct_clips": distinct,
              "clip_keyint": sorted({s.keyint for s in samples}), "steps_per_run": args.steps, "models": settings,
              "setup_s": round(setup_s, 1),
              "task": "train steps on 256x256 face clips: decode a random window, augment per clip, forward+backward+optimizer"}
    path = write_result("train", environment(device), inputs, results, args.out_dir, extra=extra)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
