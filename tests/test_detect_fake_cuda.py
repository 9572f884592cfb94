"""The whole detector with device="cuda" on fake CUDA tensors (dfdc_fast.bench.fake_cuda), on
frames of DFDC's sizes, in CI without a GPU (issue #26).

Each run fails on a tensor left on the CPU, on a host read other than the three budgeted ones
per pass (``MTCNN._read``, through ``runtime.fetch``, answered from a CPU run of the same
frames), and on a shape or dtype mismatch, the native ops' included (their fake kernels check
what the real ones do). It also counts the ops on CUDA tensors: about one kernel launch each,
in the configuration a GPU runs (256 frames per P-Net chunk, 8192 crops per R-/O-Net forward,
no channels-last, buckets of padded widths).
"""
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dfdc_fast.bench.counting import OpCounter
from dfdc_fast.bench.fake_cuda import ReplayError, record_fetches
from dfdc_fast.detect import MTCNN
from dfdc_fast.io import read_video

THRESHOLDS = (0.6, 0.7, 0.7)


def area_resize(frames: torch.Tensor, h: int, w: int) -> torch.Tensor:
    x = F.interpolate(frames.permute(0, 3, 1, 2).float(), size=(h, w), mode="area")
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


@pytest.fixture(scope="module")
def full(samples_dir):
    """Two frames of a 1920x1080 clip and two of a 1080x1920 one (DFDC's two shapes)."""
    return [read_video(os.path.join(samples_dir, c), [0, 150]).frames for c in ("ccfoszqabv.mp4", "afoovlsmtx.mp4")]


def rehearse(fake_gpu, preset, videos, overrides=None, **kw):
    """The same call on the CPU (recording its reads) and on fake CUDA (replaying them)."""
    overrides = overrides or {}
    with record_fetches() as reads:
        cpu = MTCNN("cpu", preset, **overrides).detect_many(videos, **kw)
    with fake_gpu(replay=reads) as fc:
        det = MTCNN("cuda", preset, **overrides)
        assert det.pnet.conv1.weight.device.type == "cuda"
        out = det.detect_many([fc.tensor(v) for v in videos], **kw)
    assert fc.replay_left == 0 and fc.host_reads == det.host_reads == len(reads)
    assert fc.counter.syncs == fc.host_reads, fc.counter.sync_ops  # nothing else waited for the device
    for a, b in zip(cpu, out):
        assert b.boxes.device.type == b.scores.device.type == b.counts.device.type == b.landmarks.device.type == "cuda"
        assert b.boxes.shape == a.boxes.shape and b.landmarks.shape == a.landmarks.shape
        assert b.counts.dtype == a.counts.dtype == torch.int64 and b.boxes.dtype == torch.float32
        assert b.frame_size == a.frame_size and torch.equal(b.frame_indices, a.frame_indices)
    assert sum(int(d.counts.sum()) for d in cpu) > 0  # the pass went through every stage
    return fc, reads


def test_export_preset_on_1080p_frames_of_both_shapes(fake_gpu, full):
    # the Medics' export (0.5x inside: 960x540 and 540x960), one call with both shapes;
    # this preset failed at construction under a fake mode before (the nets' module swap)
    fc, reads = rehearse(fake_gpu, "medics_export", [v[:1] for v in full])
    assert fc.host_reads == 3


def test_default_preset_at_960x540_and_540x960(fake_gpu, full):
    halves = [area_resize(v, v.shape[1] // 2, v.shape[2] // 2) for v in full]
    fc, _ = rehearse(fake_gpu, None, halves, frame_indices=[[0, 150], [3, 9]])
    assert fc.host_reads == 3


def test_inference_preset_at_480_pixels_with_its_fallback_budget(fake_gpu, full):
    # the Medics' inference: a longer side of 480 (270x480 and 480x270), fallback pass
    fc, _ = rehearse(fake_gpu, "medics_inference", full)
    assert 3 <= fc.host_reads <= 6
    # thresholds no candidate passes (one read, then nothing to refine): every frame goes
    # through the fallback pass, three more
    small = [area_resize(v, 270, 480) for v in full[:1]]
    fc, _ = rehearse(fake_gpu, None, small, {"thresholds": (1.0, 1.0, 1.0), "fallback_thresholds": THRESHOLDS})
    assert fc.host_reads == 4


@pytest.mark.slow
def test_full_resolution_1080p(fake_gpu, full):
    fc, _ = rehearse(fake_gpu, None, [full[0][:1]], {"thresholds": THRESHOLDS})
    assert fc.host_reads == 3


def test_reads_go_through_fetch_only(fake_gpu, full):
    frames = full[0][:1]
    with fake_gpu(replay=None) as fc:
        det = MTCNN("cuda", "medics_export")
        with pytest.raises(ReplayError):  # the first count read asks the replay, which has none
            det.detect(fc.tensor(frames))
    # on the CPU, the same reads are the call's only host syncs
    with OpCounter() as c:
        MTCNN("cpu", "medics_export").detect(frames)
    assert c.syncs == 3, c.sync_ops


def test_launches_per_frame_of_the_gpu_configuration(fake_gpu, samples_dir):
    """At most 15 kernel-launching ops per frame for a call of 120 frames of 960x540 (issue #26).

    The replay comes from a CPU run on 8 real frames, tiled 15 times: frames are detected
    independently, so the counts of the tiled frames are the 8 frames' counts tiled (the
    same faces at any batch size; tests/test_detect_static.py)."""
    v = read_video(os.path.join(samples_dir, "ccfoszqabv.mp4"), list(range(0, 240, 30))).frames
    frames = area_resize(v, 540, 960)
    with record_fetches() as reads:
        MTCNN("cpu", thresholds=THRESHOLDS).detect(frames)
    tiled = [[np.tile(a, 15) for a in r] for r in reads]
    assert len(tiled) == 3 and tiled[0][0].sum() > 0 and tiled[2][0].sum() >= 8 * 15
    with fake_gpu(replay=tiled) as fc:
        det = MTCNN("cuda", thresholds=THRESHOLDS)
        forwards = []
        for net in (det.pnet, det.rnet, det.onet):
            net.register_forward_hook(lambda m, i, o: forwards.append(type(m).__name__))
        x = fc.tensor(torch.cat([frames] * 15))
        before = fc.counter.kernels
        out = det.detect(x)
    assert out.boxes.shape[0] == 120 and fc.host_reads == 3 and fc.counter.syncs == 3
    launches = fc.counter.kernels - before
    # P-Net runs once per chunk of frames (all 120 here), not once per pyramid scale (10 here);
    # R-Net sees ~38k crops, 8192 per forward
    assert forwards.count("PNet") == 1 and forwards.count("ONet") == 1, forwards
    assert launches / 120 <= 15, (launches, fc.counter.ops.most_common(20))
