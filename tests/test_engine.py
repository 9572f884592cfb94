"""The video→faces engine: the same results in-process and in worker processes, a bounded
number of host syncs per video, and a run that survives bad videos and dying workers."""
import os
import shutil

import numpy as np
import pytest
import torch

from dfdc_fast import extension
from dfdc_fast.bench.counting import OpCounter
from dfdc_fast.engine import ClipSpec, CropSpec, Engine, FacePath, FacesRequest, VideoTask, crop_frames
from dfdc_fast.engine.path import FAULT_ENV
from dfdc_fast.io import First, open_reader
from dfdc_fast.ops import crop_resize
from dfdc_fast.track import TrackConfig
from videos import make_video

pytestmark = pytest.mark.skipif(not extension._has_ops(), reason="extension not built (run scripts/setup.sh)")

CLIPS = ["ccfoszqabv.mp4", "caifxvsozs.mp4", "afoovlsmtx.mp4"]  # one person, two people, portrait
FRAMES = 60


def request(**kw):
    base = dict(frames=First(FRAMES), every=10, track=TrackConfig(min_frames=30, min_detections=4),
                clips=ClipSpec(128), crops=CropSpec(count=4))
    base.update(kw)
    return FacesRequest(**base)


def summary(res):
    """What must not depend on where the video was processed."""
    clips = None if res.clip_frames is None else res.clip_frames.numpy().copy()
    crops = None if res.crop_data is None else res.crop_data.numpy().copy()
    return (res.status, [t.to_dict() for t in res.tracks], [vars(c) for c in res.clips], clips,
            [vars(c) for c in res.crops], crops)


@pytest.fixture(scope="module")
def in_process(samples_dir):
    path = FacePath(request(), "cpu", "pyav")
    return {c: path.run(VideoTask(c, os.path.join(samples_dir, c))) for c in CLIPS}


def test_faces_of_real_clips(in_process):
    one, two, portrait = (in_process[c] for c in CLIPS)
    for res in (one, two, portrait):
        assert res.status == "ok", res.error
        assert res.clip_frames.shape[1:] == (128, 128, 3) and res.clip_frames.dtype == torch.uint8
        assert sum(c.frames for c in res.clips) == res.clip_frames.shape[0]
        for c in res.crops:  # JPEG bytes that decode to the crop's size
            from torchvision.io import decode_jpeg

            img = decode_jpeg(res.crop_data[c.offset:c.offset + c.length])
            assert tuple(img.shape[1:]) == c.size
    assert len(one.tracks) == 1 and len(two.tracks) == 2
    assert portrait.info.height > portrait.info.width


def test_clip_equals_cutting_the_rgb_frames(in_process, samples_dir):
    """The engine's clip (YUV -> RGB, crop, pad, resize in one kernel) equals cutting the
    decoder's RGB frames with torch, up to the two colour conversions' rounding."""
    import torch.nn.functional as F

    from dfdc_fast.engine import int_box

    res = in_process["ccfoszqabv.mp4"]
    video = open_reader("pyav").read_raw(os.path.join(samples_dir, "ccfoszqabv.mp4"), First(FRAMES)).to_video()
    c = res.clips[0]
    track = res.tracks[c.track]
    x0, y0, x1, y1 = int_box(track.box.numpy(), video.info.height, video.info.width)
    side = max(x1 - x0, y1 - y0)
    square = torch.zeros((c.frames, side, side, 3))
    square[:, :y1 - y0, :x1 - x0] = video.frames[c.start:c.stop, y0:y1, x0:x1].float()
    ref = F.interpolate(square.permute(0, 3, 1, 2), size=(128, 128), mode="area").round().clamp(0, 255)
    ours = res.clip(c).permute(0, 3, 1, 2).float()
    assert (ours - ref).abs().max() <= 1


@pytest.mark.parametrize("workers", [1, 2])
def test_worker_processes_give_the_same_results(in_process, samples_dir, workers):
    with Engine(request(), "cpu", workers=workers, decoder="pyav") as engine:
        got = {r.key: r for r in engine.run(VideoTask(c, os.path.join(samples_dir, c)) for c in CLIPS)}
    assert set(got) == set(CLIPS)
    for c in CLIPS:
        a, b = summary(got[c]), summary(in_process[c])
        assert a[:3] == b[:3] and a[4] == b[4]
        assert np.array_equal(a[3], b[3]) and np.array_equal(a[5], b[5])
    if workers == 2:
        assert len({r.worker for r in got.values()}) == 2  # both workers took videos


def test_host_syncs_per_video_are_bounded(samples_dir):
    """At most 10 host syncs per video in the per-video path, whatever its frames, tracks
    and crops (OpCounter counts them on the CPU; on a GPU they are real waits)."""
    path = FacePath(request(crops=CropSpec(count=16)), "cpu", "pyav")
    for c in CLIPS:
        with OpCounter() as k:
            res = path.run(VideoTask(c, os.path.join(samples_dir, c)))
        assert res.status == "ok"
        assert k.syncs <= 10, (c, k.sync_ops)


def test_decoding_and_conversion_have_no_host_syncs(samples_dir):
    reader = open_reader("pyav")
    for n in (20, 45):
        with OpCounter() as k:
            raw = reader.read_raw(os.path.join(samples_dir, "ccfoszqabv.mp4"), First(n))
            h, w = raw.info.height, raw.info.width
            rois = torch.tensor([[t, 0, 0, w, h, 0, 0, w, h, w // 2, h // 2, 0, 0] for t in range(n)])
            crop_resize(raw.data, rois, (h // 2, w // 2), layout=raw.layout)
        assert k.syncs == 0, k.sync_ops
        assert k.kernels <= 5  # no op per frame


def test_bad_videos_get_statuses(tmp_path):
    make_video(str(tmp_path / "noface.mp4"), frames=40, width=320, height=240)
    (tmp_path / "zero.mp4").write_bytes(b"")
    (tmp_path / "text.mp4").write_text("not a video")
    tasks = [VideoTask(n, str(tmp_path / n)) for n in ("noface.mp4", "zero.mp4", "text.mp4", "absent.mp4")]
    path = FacePath(request(), "cpu", "pyav")
    got = {t.key: path.run(t) for t in tasks}
    assert got["noface.mp4"].status == "no_face" and got["noface.mp4"].clip_frames is None
    assert got["zero.mp4"].status == "decode_error" and "empty" in got["zero.mp4"].error
    assert got["text.mp4"].status == "decode_error"
    assert got["absent.mp4"].status == "decode_error"


def test_a_dying_worker_is_replaced_and_its_video_fails(tmp_path, samples_dir, monkeypatch):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("a.mp4", "crash_b.mp4", "c.mp4"):
        shutil.copy(os.path.join(samples_dir, "ccfoszqabv.mp4"), src / name)
    monkeypatch.setenv(FAULT_ENV, "crash:crash_")
    with Engine(request(frames=First(20), crops=None, clips=None), "cpu", workers=2, decoder="pyav") as engine:
        got = {r.key: r for r in engine.run(VideoTask(n, str(src / n)) for n in ("a.mp4", "crash_b.mp4", "c.mp4"))}
        assert engine.replaced == 1
    assert got["crash_b.mp4"].status == "error" and "died" in got["crash_b.mp4"].error
    assert got["a.mp4"].status in ("ok", "no_face") and got["c.mp4"].status in ("ok", "no_face")


def test_a_hanging_video_times_out(tmp_path, samples_dir, monkeypatch):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("hang_a.mp4", "b.mp4"):
        shutil.copy(os.path.join(samples_dir, "ccfoszqabv.mp4"), src / name)
    monkeypatch.setenv(FAULT_ENV, "hang:hang_")
    with Engine(request(frames=First(20), crops=None, clips=None), "cpu", workers=1, decoder="pyav",
                video_timeout=8) as engine:
        got = {r.key: r for r in engine.run(VideoTask(n, str(src / n)) for n in ("hang_a.mp4", "b.mp4"))}
    assert got["hang_a.mp4"].status == "error" and "timed out" in got["hang_a.mp4"].error
    assert got["b.mp4"].status in ("ok", "no_face")


def test_workers_end_with_a_killed_parent(tmp_path, samples_dir):
    """A parent killed mid-video (SIGKILL: no close, no pipe message) leaves no orphan worker."""
    import signal
    import subprocess
    import sys
    import time

    clip = tmp_path / "hang_a.mp4"
    shutil.copy(os.path.join(samples_dir, "ccfoszqabv.mp4"), clip)
    code = f"""
import sys, time
from dfdc_fast.engine import Engine, FacesRequest, VideoTask
from dfdc_fast.io import First
with Engine(FacesRequest(frames=First(20), clips=None, crops=None), "cpu", workers=1, decoder="pyav") as engine:
    print(engine._pool[0].process.pid, flush=True)
    for _ in engine.run([VideoTask("a", {str(clip)!r})]):
        pass
"""
    env = {**os.environ, FAULT_ENV: "hang:hang_"}
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
    worker = int(parent.stdout.readline())
    time.sleep(2)  # the worker is inside the video now
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and os.path.exists(f"/proc/{worker}"):
        time.sleep(0.2)
    alive = os.path.exists(f"/proc/{worker}")
    if alive:
        os.kill(worker, signal.SIGKILL)
    assert not alive, "the worker outlived its parent"


def test_crop_frames_are_evenly_spaced():
    assert crop_frames(300, 4) == [0, 100, 199, 299]
    assert crop_frames(3, 10) == [0, 1, 2] and crop_frames(0, 4) == [] and crop_frames(10, 1) == [0]


@pytest.mark.cuda
def test_cuda_path_equals_cpu_and_has_no_unexpected_syncs(samples_dir):
    from dfdc_fast.bench.counting import no_syncs

    req = request(detector="medics_export")
    cpu = FacePath(req, "cpu", "pyav").run(VideoTask(0, os.path.join(samples_dir, "ccfoszqabv.mp4")))
    gpu_path = FacePath(req, "cuda", "nvdec")
    raw = gpu_path.reader.read_raw(os.path.join(samples_dir, "ccfoszqabv.mp4"), First(FRAMES))
    assert raw.layout == "nv12" and raw.data.is_cuda
    with no_syncs("cuda", mode="warn"):
        gpu = gpu_path.run(VideoTask(0, os.path.join(samples_dir, "ccfoszqabv.mp4")))
    assert gpu.status == cpu.status == "ok" and len(gpu.tracks) == len(cpu.tracks)
    assert gpu.clip_frames.device.type == "cpu"  # to_host: one copy per video
    for a, b in zip(gpu.tracks, cpu.tracks):
        assert (a.start, a.stop) == (b.start, b.stop)
        assert torch.allclose(a.box, b.box, atol=8)
