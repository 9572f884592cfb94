"""PyAV decoding: the real DFDC clips, synthetic edge cases, selectors and bad input."""
import json
import os

import numpy as np
import pytest
import torch

from dfdc_fast.io import (Chunk, Evenly, Every, First, Indices, VideoDecodeError, open_reader, read_header,
                          read_video, read_videos)
from videos import frame_level, make_audio_only, make_video, psnr, truncate

PORTRAIT = {"afoovlsmtx.mp4"}


def sample_clips(samples_dir):
    with open(os.path.join(samples_dir, "metadata.json")) as f:
        return sorted(json.load(f))


@pytest.mark.slow
def test_all_sample_clips_decode_with_right_counts_and_orientation(samples_dir):
    names = sample_clips(samples_dir)
    assert len(names) == 20
    portrait = set()
    paths = [os.path.join(samples_dir, n) for n in names]
    # Every(50) keeps 6 frames but decodes each clip to its end, which counts the frames.
    for path, video in read_videos(paths, Every(50), decoder="pyav", workers=2):
        name = os.path.basename(path)
        assert not isinstance(video, Exception), video
        expected = 299 if name == "adwbthsgqb.mp4" else 300
        assert video.info.num_frames == expected and video.info.num_frames_exact
        assert video.indices.tolist() == list(range(0, expected, 50))
        t, h, w, c = video.frames.shape
        assert (t, c) == (6, 3) and video.frames.dtype == torch.uint8 and video.frames.is_contiguous()
        assert (h, w) == (video.info.height, video.info.width)
        assert {(w, h)} <= {(1920, 1080), (1080, 1920)}
        assert video.info.codec == "h264" and abs(video.info.fps - 29.97) < 0.1
        if h > w:
            portrait.add(name)
        assert float(video.frames.float().std()) > 10  # real pictures, not blank buffers
    assert len(portrait) == 2 and PORTRAIT <= portrait


def test_full_read_matches_selected_reads(samples_dir):
    path = os.path.join(samples_dir, "ccfoszqabv.mp4")
    full = read_video(path, First(40))
    assert full.frames.shape == (40, 1080, 1920, 3)
    for sel, idx in [(Indices([39, 3, 3]), [39, 3, 3]), (Chunk(0, size=16), list(range(16)))]:
        v = read_video(path, sel)
        assert v.indices.tolist() == idx
        assert torch.equal(v.frames, full.frames[idx])
    every = read_video(path, Every(10))
    assert torch.equal(every.frames[:4], full.frames[[0, 10, 20, 30]])
    assert every.indices.tolist() == list(range(0, 300, 10))


def test_evenly_spaced_on_a_real_clip(samples_dir):
    v = read_video(os.path.join(samples_dir, "adwbthsgqb.mp4"), Evenly(32))
    assert len(v) == 32 and v.indices[0] == 0 and v.indices[-1] == 298


def test_frames_come_back_in_order_with_the_right_content(tmp_path):
    path = make_video(str(tmp_path / "idx.mp4"), frames=25)
    v = read_video(path, [24, 0, 7, 7])
    levels = v.frames[:, :, 16:, 1].float().mean((1, 2)).round().int().tolist()
    assert v.indices.tolist() == [24, 0, 7, 7]
    assert all(abs(lv - frame_level(i)) <= 3 for lv, i in zip(levels, [24, 0, 7, 7]))


def test_selector_edges_on_a_short_video(tmp_path):
    path = make_video(str(tmp_path / "short.mp4"), frames=5)
    assert read_video(path, Every(100)).indices.tolist() == [0]
    assert len(read_video(path, First(50))) == 5
    assert len(read_video(path, Evenly(32))) == 5
    assert read_video(path, Chunk(0)).indices.tolist() == list(range(5))
    with pytest.raises(ValueError, match=r"\[5, 9\]"):
        read_video(path, [0, 5, 9])
    with pytest.raises(ValueError, match="past the end"):
        read_video(path, Chunk(1))


def test_single_frame_video(tmp_path):
    v = read_video(make_video(str(tmp_path / "one.mp4"), frames=1))
    assert v.frames.shape[0] == 1 and v.info.num_frames == 1


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_rotation_metadata_is_applied(tmp_path, rotation):
    path = make_video(str(tmp_path / f"rot{rotation}.mp4"), frames=3, width=64, height=32, rotation=rotation)
    v = read_video(path)
    assert v.info.rotation == rotation
    upright = read_video(make_video(str(tmp_path / "up.mp4"), frames=3, width=64, height=32))
    expected = torch.rot90(upright.frames, k=rotation // 90, dims=(1, 2))
    assert v.frames.shape == expected.shape
    assert (v.info.width, v.info.height) == (expected.shape[2], expected.shape[1])
    assert (v.frames.float() - expected.float()).abs().mean() < 2


def test_variable_frame_rate_video(tmp_path):
    path = make_video(str(tmp_path / "vfr.mp4"), frames=30, vfr=True)
    info = read_header(path, count_frames=True)
    assert info.variable_frame_rate is True and info.num_frames == 30
    v = read_video(path, Every(5))
    assert v.indices.tolist() == [0, 5, 10, 15, 20, 25] and v.info.num_frames == 30
    assert read_header(make_video(str(tmp_path / "cfr.mp4")), count_frames=True).variable_frame_rate is False


def test_video_with_audio_and_other_containers(tmp_path):
    for name, kw in [("av.mp4", {"audio": True}), ("v.mkv", {}), ("v.webm", {"codec": "libvpx-vp9"}),
                     ("v.avi", {"codec": "mpeg4"})]:
        v = read_video(make_video(str(tmp_path / name), frames=12, **kw))
        assert v.frames.shape == (12, 48, 64, 3), name


def test_reader_is_reusable_across_videos(tmp_path, samples_dir):
    with open_reader("pyav", "cpu", threads=2) as reader:
        a = reader.read(make_video(str(tmp_path / "a.mp4"), frames=4))
        b = reader.read(os.path.join(samples_dir, "afoovlsmtx.mp4"), First(2))
        c = reader.read(make_video(str(tmp_path / "c.mp4"), frames=6, width=32, height=32))
    assert a.frames.shape == (4, 48, 64, 3) and b.frames.shape == (2, 1920, 1080, 3) and c.frames.shape == (6, 32, 32, 3)


# --- bad input ---------------------------------------------------------------------------

def bad_inputs(tmp_path, samples_dir):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    good = make_video(str(tmp_path / "good.mp4"), frames=60, width=128, height=96)
    return {
        "zero-byte": (str(empty), "empty file"),
        "text": (str(text), "not a readable video"),
        "random bytes": (str(garbage), "not a readable video"),
        "truncated faststart": (truncate(good, str(tmp_path / "trunc_fs.mp4"), 0.5), "truncated or corrupt"),
        "truncated DFDC (moov at end)": (truncate(os.path.join(samples_dir, "ccfoszqabv.mp4"),
                                                  str(tmp_path / "trunc.mp4"), 0.5), "not a readable video"),
        "audio-only": (make_audio_only(str(tmp_path / "audio.m4a")), "no video stream (audio-only"),
        "missing": (str(tmp_path / "nope.mp4"), "no such file"),
        "directory": (str(tmp_path), "is a directory"),
    }


def test_every_bad_input_raises_one_clear_error(tmp_path, samples_dir):
    for kind, (path, cause) in bad_inputs(tmp_path, samples_dir).items():
        with pytest.raises(VideoDecodeError) as err:
            read_video(path, Every(10))
        assert err.value.path == path, kind
        assert cause in err.value.cause, (kind, err.value.cause)
        assert path in str(err.value)


def test_a_bad_video_does_not_stop_a_batch(tmp_path, samples_dir):
    bad = bad_inputs(tmp_path, samples_dir)
    good = make_video(str(tmp_path / "ok.mp4"), frames=8)
    paths = [good] + [p for p, _ in bad.values()] + [good]
    results = list(read_videos(paths, Every(4), workers=2))
    assert [p for p, _ in results] == paths
    assert [type(r).__name__ for _, r in results] == ["Video"] + ["VideoDecodeError"] * len(bad) + ["Video"]


def test_unreadable_permission(tmp_path):
    path = make_video(str(tmp_path / "locked.mp4"))
    os.chmod(path, 0)
    try:
        if os.access(path, os.R_OK):
            pytest.skip("running as root: permissions do not stop reads")
        with pytest.raises(VideoDecodeError, match="permission denied"):
            read_video(path)
    finally:
        os.chmod(path, 0o644)


def test_frames_move_to_the_requested_device(tmp_path):
    v = read_video(make_video(str(tmp_path / "m.mp4"), frames=3), device=torch.device("cpu"))
    assert v.frames.device.type == "cpu"
    assert "uint8(3, 48, 64, 3)" in repr(v)


@pytest.mark.parametrize("size", [(64, 96), (96, 54)])  # landscape, and portrait with odd chroma width
def test_nv12_conversion_matches_pyav(tmp_path, size):
    """Our NV12->RGB (used for NVDEC surfaces) equals swscale's, bit for bit."""
    import av

    from dfdc_fast.io.color import nv12_to_rgb

    h, w = size
    path = make_video(str(tmp_path / "c.mp4"), frames=3, width=w, height=h)
    with av.open(path) as c:
        frame = next(c.decode(video=0))
        ref = frame.to_ndarray(format="rgb24")
        nv12 = torch.from_numpy(frame.reformat(format="nv12").to_ndarray())
    padded = torch.zeros(nv12.shape[0] + 24, nv12.shape[1] + 8, dtype=torch.uint8)  # decoder alignment padding
    padded[:h, :w] = nv12[:h]
    padded[h + 16:h + 16 + (h + 1) // 2, :w] = nv12[h:]
    ours = nv12_to_rgb(padded, h, w).numpy()
    assert ours.shape == ref.shape and np.array_equal(ours, ref), psnr(ours, ref)


@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
@pytest.mark.parametrize("faststart", [True, False])
def test_rotation_is_read_from_the_track_header(tmp_path, rotation, faststart):
    """read_header takes the display rotation from the MP4 track header (no decoding),
    and it equals what a decoded frame reports."""
    import av

    from dfdc_fast.io.mp4 import display_rotation

    path = make_video(str(tmp_path / "r.mp4"), frames=3, rotation=rotation, faststart=faststart)
    with av.open(path) as c:
        decoded = int(round(next(c.decode(video=0)).rotation / 90.0)) % 4 * 90
    assert display_rotation(path) == decoded
    info = read_header(path)
    assert info.rotation == decoded and (info.width, info.height) == ((48, 64) if rotation in (90, 270) else (64, 48))


def test_rotation_of_other_containers_comes_from_a_frame(tmp_path):
    from dfdc_fast.io.mp4 import display_rotation

    path = make_video(str(tmp_path / "r.mkv"), frames=3, rotation=90)
    assert display_rotation(path) is None
    assert read_header(path).rotation in (0, 90)  # whatever FFmpeg reports for this container
