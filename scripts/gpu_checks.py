"""GPU diagnostics that explain a failing CUDA test, printed as JSON lines.

    python scripts/gpu_checks.py --samples .samples

* nvdec colour: PSNR of NVDEC frames against PyAV for PyNvVideoCodec's own RGB conversion
  and for ours (NV12 + :mod:`dfdc_fast.io.color`), plus the error per column band.
* MTCNN CUDA vs CPU: worst face IoU per clip with TF32 convolutions on and off, for ours and
  for facenet-pytorch, so a tolerance can be set from the reference's own drift.
"""
from __future__ import annotations

import argparse
import json
import os

import numpy as np
import torch


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    return 99.0 if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def nvdec_colour(samples: str) -> None:
    from dfdc_fast.io import Every, read_video
    from dfdc_fast.io.nvdec import NvdecReader
    for name in ("ccfoszqabv.mp4", "afoovlsmtx.mp4", "adwbthsgqb.mp4"):
        path = os.path.join(samples, name)
        ref = read_video(path, Every(25), decoder="pyav").frames.numpy()
        row = {"check": "nvdec_colour", "clip": name}
        for color in ("nvdec", "torch"):
            with NvdecReader("cuda", color=color) as reader:
                out = reader.read(path, Every(25)).frames.cpu().numpy()
            row[color] = round(psnr(out, ref), 2)
            w = out.shape[2]
            bands = [(0, 16), (16, w - 16), (w - 16, w)]
            row[color + "_bands"] = [round(psnr(out[:, :, a:b], ref[:, :, a:b]), 2) for a, b in bands]
            row[color + "_first_last"] = [round(psnr(out[:1], ref[:1]), 2), round(psnr(out[-1:], ref[-1:]), 2)]
        print(json.dumps(row), flush=True)


def worst_iou(a, b) -> float:
    from torchvision.ops import box_iou
    worst = 1.0
    for f in range(len(a.counts)):
        ba, bb = a.boxes[f, : a.counts[f]].cpu().float(), b.boxes[f, : b.counts[f]].cpu().float()
        if len(ba) != len(bb):
            return 0.0
        if len(ba):
            worst = min(worst, float(box_iou(ba, bb).max(1).values.min()))
    return worst


def mtcnn_drift(samples: str) -> None:
    from facenet_pytorch import MTCNN as FacenetMTCNN
    from dfdc_fast.detect import MTCNN, Detections
    from dfdc_fast.io import First, read_video
    th = (0.6, 0.7, 0.7)
    for name in ("ccfoszqabv.mp4", "afoovlsmtx.mp4", "caifxvsozs.mp4", "abofeumbvv.mp4"):
        frames = read_video(os.path.join(samples, name), First(30), decoder="pyav").frames
        frames = torch.nn.functional.interpolate(frames.permute(0, 3, 1, 2).float(), scale_factor=0.5,
                                                 mode="area").round().byte().permute(0, 2, 3, 1).contiguous()
        row = {"check": "mtcnn_drift", "clip": name}
        cpu = MTCNN("cpu", thresholds=th).detect(frames)
        fcpu = FacenetMTCNN(keep_all=True, device="cpu", thresholds=list(th))
        fb = [fcpu.detect(f.numpy())[0] for f in frames]
        for tf32 in (True, False):
            torch.backends.cudnn.allow_tf32 = tf32
            gpu = MTCNN("cuda", thresholds=th).detect(frames.cuda())
            row[f"ours_tf32={tf32}"] = round(worst_iou(cpu, gpu), 4)
            fg = FacenetMTCNN(keep_all=True, device="cuda", thresholds=list(th))
            gb = [fg.detect(f.numpy())[0] for f in frames]
            size = tuple(frames.shape[1:3])
            row[f"facenet_tf32={tf32}"] = round(worst_iou(Detections.from_lists(range(len(fb)), fb, frame_size=size),
                                                          Detections.from_lists(range(len(gb)), gb, frame_size=size)), 4)
        torch.backends.cudnn.allow_tf32 = True
        print(json.dumps(row), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", default=os.environ.get("DFDC_SAMPLES", ".samples"))
    ap.add_argument("--checks", default="nvdec_colour,mtcnn_drift")
    args = ap.parse_args()
    for check in args.checks.split(","):
        try:
            globals()[check](args.samples)
        except Exception as exc:  # a diagnostic reports and goes on to the next check
            print(json.dumps({"check": check, "error": f"{type(exc).__name__}: {exc}"}), flush=True)


if __name__ == "__main__":
    main()
