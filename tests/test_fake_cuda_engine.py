"""The engine's GPU path on fake CUDA (bench/fake_cuda.py): FacePath with NVDEC's output
replaced by fake NV12 CUDA surfaces in the decoder's layout (a pitch wider than the frame,
luma rows padded to 16, interleaved chroma below), then crop_resize to the detector's frames,
MTCNN, tracking, clips and crops cut on the device, extract's one pinned copy to the host, and
infer's batches scored by the ensemble. The host reads (runtime.fetch) are answered by a CPU run
of the same request on the same clip (PyAV there), and their count is the video's budget.
"""
import os
import types as pytypes
import warnings

import numpy as np
import pytest
import torch

from dfdc_fast.bench.fake_cuda import fake_cuda, record_fetches
from dfdc_fast.engine import ClipSpec, CropSpec, FacePath, FacesRequest, VideoTask
from dfdc_fast.infer.ensemble import Ensemble
from dfdc_fast.io import First
from dfdc_fast.io import nvdec as nvdec_io
from dfdc_fast.io.header import read_header
from dfdc_fast.runtime import amp_dtype
from dfdc_fast.track import TrackConfig

CLIP = "ccfoszqabv.mp4"  # 1920 x 1080, one person
FRAMES, EVERY = 40, 10
HOST_READS_PER_VIDEO = 10
#: Kernel launches for a whole DFDC video (300 frames of 1080p, one face: decode, detect every
#: 10th frame, track, a clip and 8 JPEG crops) on the device: 1,191 counted on fake CUDA
#: (2026-12-03). One Python thread issues about 150k launches/s: ~125 such videos/s.
LAUNCHES_PER_VIDEO = 1500


class _Surface:
    def __init__(self, tensor):
        self.tensor = tensor


class _NvdecSession:
    """PyNvVideoCodec.SimpleDecoder as NvdecReader uses it: frames are fake NV12 surfaces."""

    def __init__(self, path, gpu_id=0, cuda_stream=0, use_device_memory=True, decoder_cache_size=4,
                 output_color_type=None):
        assert use_device_memory and output_color_type == "native"
        self._open(path)

    def _open(self, path):
        info = read_header(path)
        self.h, self.w, self.n, self.served = info.coded_height, info.coded_width, info.num_frames, 0

    def reconfigure_decoder(self, path):
        self._open(path)

    def __len__(self):
        return self.n

    def get_batch_frames(self, n):
        n = min(n, self.n - self.served)
        self.served += n
        pitch, luma_rows = -(-self.w // 256) * 256 + 256, -(-self.h // 16) * 16
        return [_Surface(torch.empty(luma_rows * 3 // 2, pitch, dtype=torch.uint8, device="cuda")) for _ in range(n)]


@pytest.fixture
def nvdec_stand_in(monkeypatch):
    nvc = pytypes.SimpleNamespace(SimpleDecoder=_NvdecSession,
                                  OutputColorType=pytypes.SimpleNamespace(NATIVE="native", RGB="rgb"))
    monkeypatch.setattr(nvdec_io, "import_pynvvideocodec", lambda: nvc)
    real = torch.from_dlpack
    monkeypatch.setattr(torch, "from_dlpack", lambda x: x.tensor if isinstance(x, _Surface) else real(x))


def _request(**kw) -> FacesRequest:
    base = dict(frames=First(FRAMES), every=EVERY, track=TrackConfig(min_frames=20, min_detections=3),
                clips=ClipSpec(256), crops=CropSpec(count=8), to_host=True)
    base.update(kw)
    return FacesRequest(**base)


def _run_both(path: str, request: FacesRequest):
    task = VideoTask(0, path)
    with record_fetches() as reads:
        cpu = FacePath(request, "cpu", "pyav").run(task)
    assert cpu.status == "ok", cpu.error
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*autocast.*")
        with fake_cuda(replay=reads) as fc:
            engine = FacePath(request, "cuda", "nvdec")
            assert engine.decoder == "nvdec"
            res = engine.run(task)
    return cpu, res, fc, reads


@pytest.mark.parametrize("encode", ["jpg", pytest.param("png", marks=pytest.mark.slow)])
def test_extract_path_on_the_device(samples_dir, nvdec_stand_in, encode):
    cpu, res, fc, reads = _run_both(os.path.join(samples_dir, CLIP), _request(crops=CropSpec(count=8, encode=encode)))
    assert res.status == "ok", res.error
    assert fc.replay_left == 0 and fc.host_reads == len(reads) <= HOST_READS_PER_VIDEO
    assert res.decoder == "nvdec" and res.frames_decoded == FRAMES
    assert [t.to_dict() for t in res.tracks] == [t.to_dict() for t in cpu.tracks]  # the replayed reads decide
    assert [vars(c) for c in res.clips] == [vars(c) for c in cpu.clips]
    assert [(c.track, c.frame, c.size) for c in res.crops] == [(c.track, c.frame, c.size) for c in cpu.crops]
    # the one bulk transfer: clips and crops copied into pinned host memory, then one wait; and
    # nvJPEG's one call for all crops, whose output sizes the host learns
    # (PNG: the crops come to the host first, in one pinned copy, for torchvision's CPU encoder)
    coder = {"encode_jpegs_cuda": 1} if encode == "jpg" else {}
    waits = 1 if encode == "jpg" else 2
    assert fc.bulk_reads == waits, fc.counter.sync_ops
    assert dict(fc.counter.sync_ops) == {"runtime.fetch": len(reads), "Stream.synchronize": waits, **coder}
    assert fc.counter.syncs <= HOST_READS_PER_VIDEO
    assert res.clip_frames.device.type == "cpu" and res.clip_frames.shape == cpu.clip_frames.shape
    assert res.crop_data.device.type == "cpu" and res.crop_data.dtype == cpu.crop_data.dtype


@pytest.mark.slow
def test_launches_per_whole_video_on_the_device(samples_dir, nvdec_stand_in):
    """The launch budget of a whole 10-second video; it must not grow with its length the way a
    per-frame loop would (the 40-frame run above costs about half of it)."""
    request = _request(frames=First(300), crops=CropSpec(count=8, encode="jpg"))
    _, res, fc, reads = _run_both(os.path.join(samples_dir, CLIP), request)
    assert res.status == "ok" and res.frames_decoded == 300
    assert fc.counter.kernels <= LAUNCHES_PER_VIDEO, fc.counter.kernels
    assert fc.counter.syncs <= HOST_READS_PER_VIDEO and fc.replay_left == 0


def test_a_streamed_video_on_the_device(samples_dir, nvdec_stand_in, monkeypatch):
    """A video streamed by segments (FacesRequest.segment_frames) through NVDEC: each segment
    is handed on from the decoder's stream, and its host reads are those of the CPU run."""
    segments, iterate = [], nvdec_io.NvdecReader.iter_raw

    def counted(self, *args, **kw):
        for part in iterate(self, *args, **kw):
            segments.append((part.data.device.type, len(part)))
            yield part

    monkeypatch.setattr(nvdec_io.NvdecReader, "iter_raw", counted)
    request = _request(track=TrackConfig(min_frames=20, min_detections=2, chunk_size=20), segment_frames=20)
    assert request.stream_blocker is None
    cpu, res, fc, reads = _run_both(os.path.join(samples_dir, CLIP), request)
    assert res.status == "ok" and res.frames_decoded == FRAMES and fc.replay_left == 0
    assert len({t.chunk for t in cpu.tracks}) == 2  # two segments, a track each
    assert [t.to_dict() for t in res.tracks] == [t.to_dict() for t in cpu.tracks]
    assert [vars(c) for c in res.clips] == [vars(c) for c in cpu.clips]
    assert segments == [("cuda", 20), ("cuda", 20)]
    assert fc.counter.syncs <= 2 * HOST_READS_PER_VIDEO  # a video's budget per segment
    assert res.clip_frames.device.type == "cpu" and res.clip_frames.shape == cpu.clip_frames.shape


def test_infer_path_on_the_device(samples_dir, nvdec_stand_in, tmp_path, monkeypatch):
    """Infer's request keeps the faces on the device (to_host=False) and scores them there."""
    from dfdc_fast import models as models_pkg
    from dfdc_fast.infer.pipeline import FaceScorer, InferConfig
    from dfdc_fast.models import create_model
    from dfdc_fast.models.checkpoint import FORMAT, Checkpoint
    from dfdc_fast.recipes import get_recipe

    with fake_cuda():  # --device cuda is checked against torch.cuda.is_available, answered here
        config = InferConfig(checkpoints=[str(tmp_path / "mc3_18.pth"), str(tmp_path / "efficientnet_b0.pth")],
                             frames=FRAMES, min_face_frames=20, device="cuda")
    for p in config.checkpoints:
        open(p, "wb").close()

    def load_model(path, device="cpu"):  # built on meta, uninitialised on the device (no weights file)
        name = os.path.basename(path)[:-4]
        with torch.device("meta"):
            model = create_model(name, num_classes=1)
        return model.to_empty(device=device).eval(), Checkpoint(FORMAT, name, {"num_classes": 1}, {})

    monkeypatch.setattr(models_pkg, "load_model", load_model)
    request = get_recipe(config.recipe).infer_request(config, {"3d", "2d"})
    path = os.path.join(samples_dir, CLIP)
    task = VideoTask(0, path)
    with record_fetches() as reads:
        cpu = FacePath(request, "cpu", "pyav").run(task)
    assert cpu.status == "ok", cpu.error
    n_faces = len(cpu.tracks)
    reads.append([np.zeros((2, n_faces), np.float32)])  # the group's scores (values do not steer the code)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*autocast.*")
        with fake_cuda(replay=reads) as fc:
            res = FacePath(request, "cuda", "nvdec").run(task)
            engine_reads = fc.host_reads
            assert res.status == "ok" and res.clip_frames.device.type == "cuda" and res.crop_data.device.type == "cuda"
            scores = FaceScorer(config, Ensemble(config.checkpoints, torch.device("cuda"), amp_dtype(config.amp, torch.device("cuda"))), torch.device("cuda")).score([res], level=0)
    # the faces' counts still come to the host in the video's one pinned copy; clips and crops stay
    assert engine_reads <= HOST_READS_PER_VIDEO and fc.replay_left == 0 and fc.bulk_reads == 1
    assert sorted(scores[0]) == sorted(m for m in ("mc3_18", "efficientnet_b0"))
    assert all(len(v) == n_faces for v in scores[0].values())
