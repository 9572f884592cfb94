"""The detector's static-shape contract (issue #12): a bounded number of host syncs per
detection pass, whatever the number of frames; no float copy of full-resolution frames;
frames already at detector scale; the GPU levers' settings.

Syncs are counted on CPU with dfdc_fast.bench.counting.OpCounter (every read of tensor
data on the host counts, so the count is an upper bound of what a GPU would do) and, on
a GPU, with torch.cuda.set_sync_debug_mode("error") around the whole call.
"""
import os

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from dfdc_fast.bench.counting import OpCounter, no_syncs
from dfdc_fast.detect import MTCNN, PRESETS, MTCNNConfig
from dfdc_fast.detect.mtcnn import _bucket
from dfdc_fast.io import read_video
from dfdc_fast.io.selectors import Every

CLIPS = ["ccfoszqabv.mp4", "acqfdwsrhi.mp4", "caifxvsozs.mp4", "afoovlsmtx.mp4"]  # REAL, FAKE, 2 people, portrait
THRESHOLDS = (0.6, 0.7, 0.7)


def area_resize(frames: torch.Tensor, h: int, w: int) -> torch.Tensor:
    x = F.interpolate(frames.permute(0, 3, 1, 2).float(), size=(h, w), mode="area")
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


@pytest.fixture(scope="module")
def full_frames(samples_dir):
    """10 frames (every 30th) of each of 4 clips at full resolution (1080p, one portrait)."""
    return [read_video(os.path.join(samples_dir, c), Every(30)).frames[:10] for c in CLIPS]


@pytest.fixture(scope="module")
def half_frames(full_frames):
    """The same at 0.5x: 960x540 (and 540x960)."""
    return [area_resize(v, v.shape[1] // 2, v.shape[2] // 2) for v in full_frames]


def count(detector, videos, **kw):
    with OpCounter() as c:
        out = detector.detect_many(videos, **kw)
    return c, out


def test_three_host_syncs_per_pass(half_frames):
    det = MTCNN("cpu", thresholds=THRESHOLDS)
    c, out = count(det, half_frames)
    assert sum(int(d.counts.sum()) for d in out) >= 40  # the pass went through all stages on real faces
    # exactly the three reads of candidates/faces per frame, nothing else
    assert c.syncs == 3 and dict(c.sync_ops) == {"Tensor.cpu": 3}, c.sync_ops  # runtime.fetch
    assert det.host_reads == 3


def test_syncs_and_kernels_do_not_grow_with_frames(half_frames):
    # frame_batch and net_batch as a GPU uses them (one chunk), so the whole call is one
    # fixed sequence of kernels whatever the number of frames
    det = MTCNN("cpu", thresholds=THRESHOLDS, frame_batch=64, net_batch=1 << 20)
    few, _ = count(det, [v[:2] for v in half_frames])
    many, _ = count(det, half_frames)
    assert few.syncs == many.syncs == 3
    assert many.kernels == few.kernels, (few.ops - many.ops, many.ops - few.ops)
    # and with the CPU's small chunks, syncs stay 3 over 5 chunks per clip
    cpu = MTCNN("cpu", thresholds=THRESHOLDS, frame_batch=2)
    assert count(cpu, half_frames)[0].syncs == 3


def test_long_side_480_and_the_fallback_budget(full_frames):
    # the Medics' inference setting on 1080p frames: resize to 480x270 inside, fallback pass
    det = MTCNN("cpu", "medics_inference")
    c, out = count(det, full_frames)
    no_fallback = MTCNN("cpu", "medics_inference", fallback_thresholds=None).detect_many(full_frames)
    frames_without_face = sum(int((d.counts == 0).sum()) for d in no_fallback)
    assert c.syncs == det.host_reads
    assert c.syncs <= (6 if frames_without_face else 3), (frames_without_face, c.sync_ops)
    assert [tuple(d.boxes.shape[:1]) for d in out] == [(10,)] * 4
    # thresholds nothing passes: every frame goes to the fallback pass, which finds the faces
    strict = MTCNN("cpu", thresholds=(1.0, 1.0, 1.0), long_side=480, fallback_thresholds=THRESHOLDS,
                   fallback_max_faces=1)
    c, out = count(strict, full_frames)
    assert 3 < c.syncs <= 6 and c.syncs == strict.host_reads
    assert all(d.counts.tolist() == [1] * 10 for d in out)


def test_no_float_copy_of_full_resolution_frames(full_frames):
    frames = full_frames[0]  # 10 x 1080 x 1920
    biggest = []

    class LargestFloat(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in out if isinstance(out, (tuple, list)) else [out]:
                if isinstance(t, torch.Tensor) and t.is_floating_point():
                    biggest.append(t.numel())
            return out

    det = MTCNN("cpu", thresholds=THRESHOLDS, long_side=480)
    with LargestFloat():
        d = det.detect(frames)
    assert d.frame_size == (1080, 1920) and int(d.counts.sum()) > 0
    one_frame = 1080 * 1920 * 3
    assert max(biggest) <= 3 * one_frame < frames.numel()  # a chunk of frames at a time, not all 10


def test_frames_already_at_detector_scale(full_frames):
    cfg = MTCNNConfig(thresholds=THRESHOLDS, long_side=480)
    assert cfg.detector_size(1080, 1920) == (270, 480) and cfg.detector_size(1920, 1080) == (480, 270)
    det = MTCNN("cpu", cfg)
    videos = full_frames[:2] + full_frames[3:]  # landscape, landscape, portrait
    small = [area_resize(v, *cfg.detector_size(v.shape[1], v.shape[2])) for v in videos]
    sizes = [(v.shape[1], v.shape[2]) for v in videos]
    ref = det.detect_many(videos, [list(range(0, 300, 30))] * 3)
    got = det.detect_many(small, [list(range(0, 300, 30))] * 3, frame_sizes=sizes)
    for a, b, size in zip(ref, got, sizes):
        assert b.frame_size == size and b.frame_indices.tolist() == list(range(0, 300, 30))
        assert torch.equal(a.counts, b.counts) and int(b.counts.sum()) > 0
        torch.testing.assert_close(a.boxes, b.boxes, rtol=0, atol=0)
        torch.testing.assert_close(a.landmarks, b.landmarks, rtol=0, atol=0)
    one = det.detect(small[0], frame_size=sizes[0])
    # alone, the video's frames meet other batch sizes in the convolutions: equal up to float
    # summation order (seen: 6e-5 px with one thread), never other faces
    assert torch.equal(one.counts, ref[0].counts)
    torch.testing.assert_close(one.boxes, ref[0].boxes, rtol=0, atol=1e-3)
    with pytest.raises(ValueError, match="detector size 270x480"):
        det.detect_many([videos[0]], frame_sizes=[sizes[0]])
    with pytest.raises(ValueError, match="frame sizes"):
        det.detect_many(small, frame_sizes=sizes[:1])


def test_detector_size_follows_the_resize_rules():
    assert MTCNNConfig().detector_size(1080, 1920) == (1080, 1920)
    assert PRESETS["medics_export"].detector_size(1080, 1920) == (540, 960)
    assert PRESETS["medics_inference"].detector_size(1080, 1920) == (270, 480)
    assert PRESETS["selim_inference"].detector_size(720, 1280) == (360, 640)
    assert PRESETS["selim_inference"].detector_size(200, 280) == (400, 560)
    assert MTCNNConfig(scale=0.001).detector_size(100, 100) == (1, 1)


def test_channels_last_gives_the_same_faces(half_frames):
    frames = half_frames[2][:4]  # two people
    a = MTCNN("cpu", thresholds=THRESHOLDS, channels_last=True).detect(frames)
    b = MTCNN("cpu", thresholds=THRESHOLDS, channels_last=False).detect(frames)
    assert torch.equal(a.counts, b.counts) and (a.counts >= 2).all()
    torch.testing.assert_close(a.boxes, b.boxes, atol=1e-2, rtol=0)
    torch.testing.assert_close(a.scores, b.scores, atol=1e-4, rtol=0)


def test_gpu_levers_are_settings():
    cfg = MTCNNConfig()
    assert cfg.pnet_dtype == "float32" and cfg.channels_last is None  # off on a GPU until measured there
    with pytest.raises(ValueError, match="pnet_dtype"):
        MTCNNConfig(pnet_dtype="int8")
    with pytest.raises(ValueError, match="frame_batch"):
        MTCNNConfig(frame_batch=0)
    assert MTCNN("cpu").channels_last and not MTCNN("cpu", channels_last=False).channels_last
    # bf16 P-Net runs on a CPU too (it is meant for GPUs)
    det = MTCNN("cpu", thresholds=THRESHOLDS, pnet_dtype="bfloat16")
    assert det.detect(torch.zeros(1, 64, 64, 3, dtype=torch.uint8)).counts.tolist() == [0]


def test_bucket_sizes():
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert [_bucket(n, cpu) for n in (0, 1, 7, 123)] == [0, 1, 7, 123]
    assert [_bucket(n, gpu) for n in (0, 1, 8, 9, 17, 100, 1000)] == [0, 8, 8, 10, 20, 112, 1024]
    for n in range(1, 5000, 7):
        b = _bucket(n, gpu)
        assert n <= b <= max(8, 1.25 * n)


@pytest.mark.cuda
def test_cuda_pass_syncs_only_to_read_counts(half_frames):
    det = MTCNN("cuda", thresholds=THRESHOLDS)
    videos = [v.cuda() for v in half_frames]
    ref = det.detect_many(videos)  # warm-up: cuDNN plans for these shapes
    with no_syncs("cuda"):  # any other sync raises
        out = det.detect_many(videos)
    assert det.host_reads == 3
    for a, b in zip(ref, out):
        assert torch.equal(a.counts, b.counts)
    fallback = MTCNN("cuda", thresholds=(1.0, 1.0, 1.0), fallback_thresholds=THRESHOLDS)
    fallback.detect_many(videos)
    with no_syncs("cuda"):
        fallback.detect_many(videos)
    assert 3 < fallback.host_reads <= 6


@pytest.mark.parametrize("full,small", [((1080, 1920), (270, 480)), ((1080, 1920), (540, 960)), ((1920, 1080), (480, 270)),
                                        ((720, 1280), (270, 480)), ((100, 200), (300, 600)), ((7, 9), (7, 3))])
def test_resize_is_bit_identical_to_interpolate(full, small):
    g = torch.Generator().manual_seed(full[0] + small[1])
    x = torch.randint(0, 256, (3, *full, 3), generator=g, dtype=torch.uint8)
    mode = "area" if small[0] <= full[0] and small[1] <= full[1] else "bilinear"
    ref = F.interpolate(x.permute(0, 3, 1, 2).float(), size=small, mode=mode, **({"align_corners": False} if mode == "bilinear" else {}))
    ref = ref.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
    assert torch.equal(MTCNN("cpu")._resize(x, *small), ref)
