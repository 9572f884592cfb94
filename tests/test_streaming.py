"""Long videos stream through the engine a segment at a time (FacesRequest.segment_frames):
memory holds one segment of decoded frames, and the outputs equal one pass over the whole
video."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from dfdc_fast import extension
from dfdc_fast.engine import ClipSpec, CropSpec, FacePath, FacesRequest, VideoTask
from dfdc_fast.engine.request import track_json
from dfdc_fast.extract import ExtractConfig
from dfdc_fast.io import First, VideoDecodeError, open_reader
from dfdc_fast.io.selectors import Evenly
from dfdc_fast.recipes import get_recipe
from dfdc_fast.track import TrackConfig
from videos import make_video

pytestmark = pytest.mark.skipif(not extension._has_ops(), reason="extension not built (run scripts/setup.sh)")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ONE, TWO = "ccfoszqabv.mp4", "caifxvsozs.mp4"  # one person, two people


def test_segments_of_a_video_are_its_frames(tmp_path):
    path = make_video(str(tmp_path / "v.mp4"), frames=50)
    reader = open_reader("pyav", "cpu", threads=1)
    whole = reader.read_raw(path)
    parts = list(reader.iter_raw(path, None, 16))
    assert [len(p) for p in parts] == [16, 16, 16, 2] and [p.last for p in parts] == [False] * 3 + [True]
    assert torch.equal(torch.cat([p.data for p in parts]), whole.data)
    assert torch.equal(torch.cat([p.indices for p in parts]), whole.indices)
    assert parts[-1].info == whole.info and parts[-1].info.num_frames_exact
    first = list(reader.iter_raw(path, First(32), 16))
    assert [len(p) for p in first] == [16, 16] and first[-1].last and first[-1].indices[-1] == 31
    with pytest.raises(ValueError, match="every frame or the first n"):
        next(reader.iter_raw(path, Evenly(4), 16))


def test_a_segment_buffer_is_sized_by_the_header_and_grows_past_it():
    from dfdc_fast.io.base import SegmentCollector

    allocs = []

    def alloc(n):
        allocs.append(n)
        return torch.zeros((n, 2), dtype=torch.uint8)

    col = SegmentCollector(None, 8, alloc, header_frames=3)  # the header under-reports: 10 frames come
    handed = []
    for i in range(10):
        if col.full:
            handed.append(col.take())
        col.slot()[:] = i
    handed.append(col.take())
    assert [len(rows) for rows, _ in handed] == [8, 2] and allocs == [3, 3, 2, 1, 1]  # doubling up to the segment
    assert [r[0].item() for rows, _ in handed for r in rows] == list(range(10))
    assert handed[1][1].tolist() == [8, 9]
    assert SegmentCollector(First(2), 8, alloc, header_frames=300).slot() is not None and allocs[-1] == 2


def test_a_truncated_video_fails_while_streaming(tmp_path):
    path = make_video(str(tmp_path / "v.mp4"), frames=120, faststart=True)
    data = open(path, "rb").read()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoDecodeError, match="truncated"):
        list(open_reader("pyav", "cpu", threads=1).iter_raw(str(cut), None, 16))


def test_which_requests_stream():
    medics = get_recipe("medics")
    assert medics.extract_request(ExtractConfig(inputs=["x"], out="o")).stream_blocker is None
    for name in ("selim", "ntech"):  # whole-video tracks: decoded whole, bounded by max_frames
        assert "chunk_size" in get_recipe(name).extract_request(ExtractConfig(inputs=["x"], out="o", recipe=name)) \
            .stream_blocker
    chunked = TrackConfig(chunk_size=150)
    assert FacesRequest(track=chunked).stream_blocker is None
    assert "multiple" in FacesRequest(track=chunked, segment_frames=500).stream_blocker
    assert "multiple" in FacesRequest(track=TrackConfig(chunk_size=10), every=10, segment_frames=10).stream_blocker
    assert "length" in FacesRequest(track=chunked, frames=Evenly(8)).stream_blocker
    assert FacesRequest(track=chunked, segment_frames=None).stream_blocker == "segment_frames is None"
    with pytest.raises(ValueError, match="segment_frames"):
        FacesRequest(segment_frames=0)


def _request(segment, **kw):
    base = dict(every=10, track=TrackConfig(chunk_size=60, min_frames=30, min_detections=4, min_clip_frames=30),
                clips=ClipSpec(64), crops=CropSpec(count=9), segment_frames=segment)
    base.update(kw)
    return FacesRequest(**base)


def _counting_segments(path: FacePath) -> list:
    """Record the frames of each segment ``path``'s reader hands on."""
    sizes, iterate = [], path.reader.iter_raw

    def counted(*args, **kw):
        for part in iterate(*args, **kw):
            sizes.append(len(part))
            yield part

    path.reader.iter_raw = counted
    return sizes


def _outputs(res):
    """Everything of a result but its timings."""
    tensors = [None if t is None else t.numpy().copy() for t in (res.clip_frames, res.crop_data)]
    return (res.status, res.error, res.info, res.frames_decoded, res.boxes_from,
            {k: v for k, v in res.detections.items()}, [track_json(t, landmarks=True) for t in res.tracks],
            [vars(c) for c in res.clips], [vars(c) for c in res.crops], tensors)


def _assert_same(a, b):
    oa, ob = _outputs(a), _outputs(b)
    assert oa[:-1] == ob[:-1]
    for x, y in zip(oa[-1], ob[-1]):
        assert (x is None and y is None) or np.array_equal(x, y)


@pytest.mark.parametrize("crops", [CropSpec(count=9), CropSpec(mode="every", encode=None)], ids=["jpg", "images"])
def test_a_streamed_video_equals_one_pass_over_it(samples_dir, crops):
    whole = FacePath(_request(None, crops=crops), "cpu", "pyav")
    streamed = FacePath(_request(120, crops=crops), "cpu", "pyav")  # 300 frames: segments of 120, 120, 60
    assert streamed.request.stream_blocker is None
    sizes = _counting_segments(streamed)
    for clip in (ONE, TWO):
        task = VideoTask(clip, os.path.join(samples_dir, clip))
        a, b = whole.run(task), streamed.run(task)
        assert sizes[-3:] == [120, 120, 60]
        assert a.status == "ok" and len({c.chunk for c in a.clips}) == 5  # tracks in every chunk
        _assert_same(a, b)
        if clip == TWO:  # two people, each the same person across the segments
            assert len({t.person for t in b.tracks}) == 2 and len(b.tracks) == 10


def test_a_streamed_fake_reuses_its_originals_tracks(samples_dir):
    real = FacePath(_request(None), "cpu", "pyav").run(VideoTask(ONE, os.path.join(samples_dir, ONE)))
    tracks = [track_json(t) for t in real.tracks]
    fake = VideoTask("fake", os.path.join(samples_dir, ONE), original_tracks=tracks)
    a = FacePath(_request(None, reuse="all"), "cpu", "pyav").run(fake)
    streamed = FacePath(_request(120, reuse="all"), "cpu", "pyav")
    sizes = _counting_segments(streamed)
    b = streamed.run(fake)
    assert sizes == [120, 120, 60]
    assert a.boxes_from == "original" and a.detections["sampled_frames"] == 0
    _assert_same(a, b)


def test_a_long_video_that_breaks_midway_is_a_decode_error(tmp_path):
    path = make_video(str(tmp_path / "v.mp4"), frames=300)
    data = open(path, "rb").read()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) * 2 // 3])
    res = FacePath(_request(60), "cpu", "pyav").run(VideoTask("cut", str(tmp_path / "cut.mp4")))
    assert res.status == "decode_error" and "truncated" in res.error and res.info is None and not res.clips


def test_a_video_failing_in_a_later_segment_keeps_no_outputs(samples_dir, monkeypatch):
    path = FacePath(_request(120), "cpu", "pyav")
    cut = path._cut_clips
    calls = []

    def failing_late(raw, *args):
        calls.append(int(raw.indices[0]))
        if len(calls) == 2:
            raise RuntimeError("cutting the second segment failed")
        return cut(raw, *args)

    monkeypatch.setattr(path, "_cut_clips", failing_late)
    res = path.run(VideoTask(ONE, os.path.join(samples_dir, ONE)))
    assert calls == [0, 120] and res.status == "error" and "second segment" in res.error
    assert res.clips == [] and res.crops == [] and res.clip_frames is None and res.crop_data is None


def _peak_rss_mb(tmp_path, name: str, frames: int) -> tuple[float, dict]:
    """Peak RSS of ``python -m dfdc_fast.extract`` (in-process, the 2-core default) on one
    synthetic 320x180 video of ``frames`` frames, and its record."""
    src = tmp_path / f"src-{name}"
    src.mkdir()
    make_video(str(src / f"{name}.mp4"), frames=frames, width=320, height=180)
    out = tmp_path / f"out-{name}"
    probe = ("import resource, subprocess, sys; rc = subprocess.call(sys.argv[1:]); "
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(rc)")
    cmd = [sys.executable, "-c", probe, sys.executable, "-m", "dfdc_fast.extract", str(src), "-o", str(out),
           "--device", "cpu", "--workers", "0", "--encoders", "0", "--no-progress", "--contact-sheet", "0"]
    run = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    record = json.load(open(out / "videos" / "_" / f"{name}.json"))  # "_": an unlabelled folder
    return int(run.stdout.split()[-1]) / 1024, record


@pytest.mark.slow
def test_a_20_minute_video_extracts_in_the_memory_of_a_20_second_one(tmp_path):
    """36,000 frames at 320x180 held 5.0 GB when the whole video was decoded at once."""
    short_mb, short = _peak_rss_mb(tmp_path, "short", 600)  # 20 s: one segment
    long_mb, long = _peak_rss_mb(tmp_path, "long", 36_000)  # 20 min: 60 segments
    assert short["status"] == long["status"] == "no_face" and long["frames"] == 36_000
    assert long["detections"]["sampled_frames"] == 3_600
    print(f"peak RSS: 20 s video {short_mb:.0f} MB, 20 min video {long_mb:.0f} MB")
    assert long_mb < short_mb + 150, (short_mb, long_mb)


@pytest.mark.cuda
def test_a_streamed_video_on_a_gpu_equals_its_cpu_run(samples_dir):
    """NVDEC segments handed from the decoder's stream to the engine's: the same segments,
    chunks and persons as the CPU's (the pixels are checked by the engine's own CUDA test)."""
    task = VideoTask(ONE, os.path.join(samples_dir, ONE))
    cpu = FacePath(_request(120), "cpu", "pyav").run(task)
    gpu_path = FacePath(_request(120), "cuda", "nvdec")
    sizes = _counting_segments(gpu_path)
    with torch.cuda.device(0):
        torch.cuda.set_sync_debug_mode("warn")
        gpu = gpu_path.run(task)
        torch.cuda.set_sync_debug_mode(0)
    assert sizes == [120, 120, 60] and gpu.status == "ok", gpu.error
    # TF32 convolutions may move a box a little, not a track out of its chunk
    assert [(c.chunk, c.person) for c in gpu.clips] == [(c.chunk, c.person) for c in cpu.clips]
    assert gpu.clip_frames.shape[1:] == cpu.clip_frames.shape[1:] and gpu.clip_frames.device.type == "cpu"
