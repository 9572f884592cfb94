"""Training benchmark: clips/s per 3D model, our loop against a plain fp32 loop, same clips.

* ``plain``  what the seed repos ran: a torch DataLoader whose CPU workers decode each clip
  window with PyAV and augment it on the CPU (the same per-clip crop/flip/brightness as
  ours), then fp32 forward/backward with Adam, contiguous tensors (the peer).
* ``ours``   ``dfdc_fast.train.train`` as a user runs it: clips decoded on the GPU (DALI if
  installed, else NVDEC; PyAV on a CPU machine), augmentation on the device, bf16 autocast
  on GPUs that have it, channels-last 3D, fused AdamW.

Both train the same model on the same extracted face clips (256x256, 150 frames) with the
seed config's clip length, input size and batch size. A run is one epoch of ``--steps``
steps; clips/s comes from the step loop only (model build and checkpointing excluded), the
first run is a warm-up, and medians of ``--repeats`` runs are reported with ours/plain.
On a GPU, "GPU busy" is the mean of NVML utilisation samples (every 50 ms) during the runs:
the share of time a kernel was running, so a loop that waits for data scores low.

    .venv/bin/python benchmarks/train.py --models mc3_18 --steps 3 --batch-size 2 --frames 8   # CPU
    python benchmarks/train.py --device cuda                                                  # GPU
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
import traceback

import torch
import torch.nn.functional as F

from dfdc_fast.bench import add_common_args, environment, prepare, write_result

HERE = os.path.dirname(os.path.abspath(__file__))
DEMO = os.path.join(os.path.dirname(HERE), "dfdc_fast", "assets", "demo")
MODELS = ["i3d", "r3d_34", "mc3_18", "r2plus1d_18"]


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


def faces_folder(args, device) -> str:
    """An extraction output to train on: --data, or the demo clips extracted now."""
    if args.data:
        return args.data
    from dfdc_fast.extract import ExtractConfig, run_extraction

    out = os.path.join(tempfile.mkdtemp(prefix="bench-train-"), "faces")
    run_extraction(ExtractConfig(inputs=[args.src], out=out, device=str(device), progress=False, contact_sheet=0))
    return out


class _PlainDataset(torch.utils.data.Dataset):
    """Decode + augment on the CPU, one clip per item (the seed repos' loaders)."""

    def __init__(self, samples, order, frames, size, augment_options, seed):
        from dfdc_fast.augment import ClipAugment

        self.samples, self.order, self.frames, self.seed = samples, order, frames, seed
        self.augment = ClipAugment(size, **augment_options)

    def __len__(self):
        return len(self.order)

    def __getitem__(self, position):
        from dfdc_fast.train.loaders import read_item, sample_rng

        s = self.samples[self.order[position]]
        clip = read_item(s, self.frames, sample_rng(self.seed, 0, position, True), None)
        x = clip.permute(3, 0, 1, 2)[None].float().div_(255)
        g = torch.Generator().manual_seed(self.seed + position)
        return self.augment(x, generator=g)[0], torch.tensor(float(s.label))


def plain_run(model_name, samples, *, frames, size, batch, steps, workers, augment, device) -> float:
    """Seconds for ``steps`` steps of the plain loop (after one untimed step)."""
    from dfdc_fast.models import create_model, model_spec, normalize
    from dfdc_fast.train.data import balanced_epoch

    spec = model_spec(model_name)
    model = create_model(model_name, num_classes=1).to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    order = (balanced_epoch(samples, 0, mode="all") * (1 + (steps + 1) * batch // max(1, len(samples))))[: (steps + 1) * batch]
    loader = torch.utils.data.DataLoader(_PlainDataset(samples, order, frames, size, augment, 0), batch_size=batch,
                                         num_workers=workers, pin_memory=device.type == "cuda", drop_last=True)
    t0 = None
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
    return time.perf_counter() - t0


def ours_run(model_name, data, *, frames, size, batch, steps, workers, augment, device, loader) -> tuple[float, str]:
    """Seconds of one training epoch of ``steps`` steps through dfdc_fast.train (its own timer)."""
    from dfdc_fast.train import TrainConfig, train
    from dfdc_fast.train.loaders import resolve_loader

    out = tempfile.mkdtemp(prefix="bench-train-ours-")
    cfg = TrainConfig(model=model_name, data=data, frames=frames, input_size=size, batch_size=batch, epochs=1,
                      max_steps_per_epoch=steps, loader=loader, workers=workers, val_fraction=0.0, balance="all",
                      augment=augment, out=out, progress=False, resume=False)
    result = train(cfg, device=device)
    return float(result.metrics[-1]["epoch_s"]), resolve_loader(loader, device, "3d")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", help="extraction output folder (default: extract --src now)")
    ap.add_argument("--src", default=DEMO, help="clips to extract when --data is not given (default: the demo set)")
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated (default: %(default)s)")
    ap.add_argument("--steps", type=int, default=20, help="timed steps per run (default: %(default)s)")
    ap.add_argument("--repeats", type=int, default=2, help="timed runs per implementation (default: %(default)s)")
    ap.add_argument("--batch-size", type=int, help="default: the model's seed config")
    ap.add_argument("--frames", type=int, help="default: the model's seed config")
    ap.add_argument("--input-size", type=int, help="default: the model's seed config")
    ap.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 2), help="plain: DataLoader workers; ours: decode threads")
    ap.add_argument("--loader", default="auto", help="ours: auto | nvdec | dali | pyav")
    add_common_args(ap, ["plain", "ours"])
    args = ap.parse_args()
    device, only = prepare(args)
    from dfdc_fast.train import load_config, read_clip_index

    data = faces_folder(args, device)
    samples = read_clip_index(data, "3d")
    results, settings = {}, {}
    for name in [m for m in args.models.split(",") if m]:
        cfg = load_config(name)
        frames, size = args.frames or cfg.frames, args.input_size or cfg.input_size
        batch = args.batch_size or cfg.batch_size
        aug = {k: v for k, v in cfg.augment.items() if k in ("scale", "ratio", "hflip", "brightness_contrast_p")}
        settings[name] = {"frames": frames, "input_size": size, "batch_size": batch, "augment": aug}
        results[name] = {}
        runs = {
            "plain": lambda: (plain_run(cfg.model, samples, frames=frames, size=size, batch=batch, steps=args.steps,
                                        workers=args.workers, augment=aug, device=device), "pyav-cpu-workers"),
            "ours": lambda: ours_run(cfg.model, data, frames=frames, size=size, batch=batch, steps=args.steps,
                                     workers=args.workers, augment=aug, device=device, loader=args.loader),
        }
        for impl, fn in runs.items():
            if only and impl not in only:
                continue
            try:
                fn()  # warm-up: cuDNN autotuning, allocator, page cache
                times = []
                with UtilSampler(device) as util:
                    for _ in range(args.repeats):
                        t, how = fn()
                        times.append(t)
                med = statistics.median(times)
                if med <= 0:
                    raise RuntimeError(f"no training step ran (run times {times})")
                results[name][impl] = {"available": True, "runs_s": [round(t, 4) for t in times], "median_s": round(med, 4),
                                       "clips_per_s": round(args.steps * batch / med, 2), "gpu_busy_percent": util.mean,
                                       "decoder": how}
                print(f"{name:>12} {impl:>5}: {args.steps * batch / med:8.2f} clips/s  GPU busy {util.mean}%  ({how})",
                      flush=True)
            except Exception as exc:  # one failing implementation is reported, the rest still run
                results[name][impl] = {"available": False, "reason": f"{type(exc).__name__}: {exc}",
                                       "traceback": traceback.format_exc(limit=4)}
                print(f"{name:>12} {impl:>5}: FAILED {type(exc).__name__}: {exc}", flush=True)
        p, o = results[name].get("plain", {}), results[name].get("ours", {})
        if p.get("available") and o.get("available"):
            o["ratio_vs_plain"] = round(p["median_s"] / o["median_s"], 2)
            print(f"{name:>12}  ours/plain: {o['ratio_vs_plain']}x", flush=True)
    inputs = {"data": data, "clips": len(samples), "steps_per_run": args.steps, "models": settings,
              "task": "train steps on 256x256 face clips: decode a random window, augment per clip, forward+backward+optimizer"}
    path = write_result("train", environment(device), inputs, results, args.out_dir,
                        extra={"unit": "clips_per_s", "repeats": args.repeats})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
