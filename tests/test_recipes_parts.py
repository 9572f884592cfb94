"""The building blocks of the selim / ntech recipes (CPU, seconds): SSIM diffs against
skimage, numba tracker and pairing against their Python references, folds, Selim's
cut-outs and NTechLab's re-encode."""
import random

import numpy as np
import pytest
import torch

from dfdc_fast.augment.cutout import BIT_MASKS, SelimCutout, bit_mask_counts, bit_mask_keep
from dfdc_fast.augment.reencode import Reencode, ReencodeParams, map_indices, output_frames, reencode
from dfdc_fast.crops.ssim import ssim_diff, ssim_diff_reference, ssim_map
from dfdc_fast.data.folds import check_folds, fold_of, fold_of_part
from dfdc_fast.track.iou import IouSettings, iou_tracks, iou_tracks_python
from dfdc_fast.track.pairs import align_tracks, align_tracks_python

#: The stated tolerance: our SSIM map is the skimage map to ~1e-12; after (1 - S) * 255 is
#: truncated to uint8 and turned grey, a pixel may differ by at most 1 grey level, on at
#: most this fraction of pixels.
DIFF_MAX_LEVELS = 1
DIFF_MAX_FRACTION = 1e-3


def _face_pair(rng, h, w):
    """A smooth 'real' image and a 'fake' with a changed blob (like a swapped face)."""
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([(xx * 3 + yy) % 256, (yy * 2 + 40) % 256, ((xx + yy) * 5) % 256], -1).astype(np.float64)
    real = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    fake = real.copy()
    blob = (yy - h / 2) ** 2 / (h / 4) ** 2 + (xx - w / 2) ** 2 / (w / 5) ** 2 < 1
    fake[blob] = np.clip(fake[blob].astype(np.int16) + rng.integers(-40, 40, (blob.sum(), 3)), 0, 255).astype(np.uint8)
    return real, fake


def test_ssim_map_and_diff_match_skimage_on_a_padded_batch():
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(0)
    sizes = [(61, 47), (40, 72), (33, 33)]
    pairs = [_face_pair(rng, h, w) for h, w in sizes]
    hm, wm = max(h for h, _ in sizes), max(w for _, w in sizes)
    x = torch.zeros((3, hm, wm, 3), dtype=torch.uint8)
    y = torch.zeros_like(x)
    for i, (a, b) in enumerate(pairs):
        x[i, :a.shape[0], :a.shape[1]] = torch.from_numpy(a)
        y[i, :b.shape[0], :b.shape[1]] = torch.from_numpy(b)
        x[i, a.shape[0]:, :] = 255  # padding is ignored
    maps = ssim_map(x, y, sizes)
    diffs = ssim_diff(x, y, sizes)
    total = worse = 0
    for i, ((a, b), (h, w)) in enumerate(zip(pairs, sizes)):
        _, ref = structural_similarity(a, b, channel_axis=-1, full=True, data_range=255)
        np.testing.assert_allclose(maps[i, :h, :w].numpy(), ref, atol=1e-9)
        ref_diff = ssim_diff_reference(a, b)
        got = diffs[i, :h, :w].numpy().astype(int)
        gap = np.abs(got - ref_diff.astype(int))
        assert gap.max() <= DIFF_MAX_LEVELS
        total, worse = total + gap.size, worse + int((gap > 0).sum())
        assert (diffs[i, h:, :] == 0).all() and (diffs[i, :, w:] == 0).all()
        assert (got > 20).sum() > 50  # the changed blob shows
    assert worse / total <= DIFF_MAX_FRACTION


def test_ssim_diff_of_identical_crops_is_zero():
    a, _ = _face_pair(np.random.default_rng(1), 30, 40)
    t = torch.from_numpy(a)
    assert int(ssim_diff(t, t).max()) == 0


def _random_detections(rng, rows, faces):
    boxes = np.zeros((rows, faces, 4), np.float32)
    scores = np.zeros((rows, faces), np.float32)
    counts = rng.integers(0, faces + 1, rows)
    centres = rng.uniform(50, 400, (faces, 2))
    for r in range(rows):
        centres += rng.normal(0, 6, centres.shape)
        for k in range(counts[r]):
            c = centres[k]
            boxes[r, k] = (c[0] - 30, c[1] - 40, c[0] + 30, c[1] + 40)
            scores[r, k] = rng.uniform(0.2, 1.0)
    return boxes, scores, counts


def test_numba_iou_tracker_equals_the_python_reference():
    rng = np.random.default_rng(2)
    for trial in range(20):
        boxes, scores, counts = _random_detections(rng, 40, 3)
        positions = list(range(0, 40)) if trial % 2 else list(range(0, 40, 2))
        for t_min in (1, 3, 7):
            s = IouSettings()
            assert iou_tracks(boxes, scores, counts, positions, s, t_min) == \
                iou_tracks_python(boxes, scores, counts, positions, s, t_min)


def _track(frames, box, jitter=0.0, rng=None):
    f = np.asarray(frames, np.int64)
    b = np.tile(np.asarray(box, np.float32), (f.size, 1))
    if jitter:
        b += rng.normal(0, jitter, b.shape).astype(np.float32)
    return f, b


def test_align_tracks_pairs_same_faces_only_and_numba_equals_python():
    rng = np.random.default_rng(3)
    real = [_track(range(0, 60, 6), (100, 100, 200, 220), 2, rng),   # face A
            _track(range(0, 60, 6), (400, 90, 500, 210), 2, rng),    # face B
            _track(range(0, 24, 6), (700, 100, 800, 200))]            # too short (4 < 5)
    fake = [_track(range(12, 72, 6), (402, 92, 502, 212), 2, rng),   # B, overlapping span
            _track(range(0, 60, 6), (102, 98, 201, 222), 2, rng),    # A
            _track(range(0, 60, 6), (700, 100, 800, 200))]            # nobody's face
    pairs = align_tracks(real, fake)
    assert [(p.real, p.fake) for p in pairs] == [(0, 1), (1, 0)]
    assert (pairs[1].start, pairs[1].stop) == (12, 55)  # the common span
    assert pairs == align_tracks_python(real, fake)
    # one frame below the IoU threshold breaks the pair
    moved = [(f, b.copy()) for f, b in fake]
    moved[1][1][4] += 60
    assert [(p.real, p.fake) for p in align_tracks(real, moved)] == [(1, 0)]
    for _ in range(20):  # random tracks: both implementations agree
        r = [_track(sorted(rng.choice(50, rng.integers(3, 12), replace=False)), rng.uniform(0, 300, 2).tolist() * 2
                    + np.array([0, 0, 80, 80]), 3, rng) for _ in range(3)]
        f = [(t[0], t[1] + rng.normal(0, 8, t[1].shape).astype(np.float32)) for t in r[::-1]]
        assert align_tracks(r, f, 3) == align_tracks_python(r, f, 3)


def test_folds_follow_parts_and_keep_fakes_with_their_original():
    assert [fold_of_part(p) for p in (0, 2, 3, 44, 45, 49)] == [0, 0, 1, 14, 15, 15]
    assert fold_of("dfdc_train_part_1", "a.mp4", None) == (0, "part")
    assert fold_of("dfdc_train_part_47", "b.mp4", "a.mp4") == (15, "part")
    # no part number: a hash of the original's name, the same for the REAL and its fakes
    real = fold_of("", "orig.mp4", None)
    assert fold_of("", "fake1.mp4", "orig.mp4") == real and real[1] == "hash"
    rows = [{"video": "orig.mp4", "label": "REAL", "part": "", "fold": real[0]},
            {"video": "fake1.mp4", "label": "FAKE", "part": "", "original": "orig.mp4", "fold": real[0]}]
    check_folds(rows)
    rows[1]["fold"] = (real[0] + 1) % 16
    with pytest.raises(ValueError, match="leak"):
        check_folds(rows)


def _cutout_batch(b=64, size=96):
    # a face filling a 96 x 96 crop: eyes at y 35, nose 52, mouth corners y 70
    lm = torch.tensor([[33.0, 35], [63, 35], [48, 52], [36, 70], [60, 70]]).expand(b, 5, 2).clone()
    x = torch.ones(b, 3, size, size)
    return x, lm


def test_cutout_landmark_masks_touch_only_their_region():
    x, lm = _cutout_batch()
    b = x.shape[0]
    cut = SelimCutout(landmark_p=1.0, hull_p=0.0, bitmask_p=0.0)
    g = torch.Generator().manual_seed(0)
    params = cut.sample_params(x.shape, generator=g)
    masks = cut.masks(x.shape, params, lm, torch.ones(b, dtype=torch.bool), torch.zeros(b),
                      torch.zeros(b, 6, dtype=torch.long), torch.full((b, 2), 48.0), torch.ones(b))[:, 0]
    u = params["u_part"]
    eyes = u[:, 0] < 0.5
    mouth = ~eyes & (u[:, 1] < 0.5)
    nose = ~eyes & ~mouth & (u[:, 2] < 0.5)
    assert eyes.any() and mouth.any() and nose.any() and (~(eyes | mouth | nose)).any()
    ys = torch.arange(96)
    for i in range(b):
        rows = ys[masks[i].any(1)]
        if eyes[i]:  # eye line (y 35) dilated by 30 // 4 + 1 = 8
            assert rows.min() >= 35 - 9 and rows.max() <= 35 + 9 and masks[i, 35, 33:64].all()
        elif mouth[i]:  # mouth line (y 70) dilated by 24 // 3 + 1 = 9
            assert rows.min() >= 70 - 10 and rows.max() <= 70 + 10 and masks[i, 70, 36:61].all()
        elif nose[i]:  # nose tip to eye midpoint, x 48
            cols = ys[masks[i].any(0)]
            assert rows.min() >= 35 - 9 and rows.max() <= 52 + 9 and cols.min() >= 48 - 9 and cols.max() <= 48 + 9
        else:
            assert not masks[i].any()
    out, cutmask = cut(x, lm, torch.ones(b, dtype=torch.bool), torch.zeros(b), torch.zeros(b, 6, dtype=torch.long),
                       torch.full((b, 2), 48.0), torch.ones(b), generator=torch.Generator().manual_seed(0))
    assert torch.equal(out == 0, cutmask.expand_as(out))
    # no landmarks: neither landmark lines nor the face outline
    masks = cut.masks(x.shape, params, lm, torch.zeros(b, dtype=torch.bool), torch.zeros(b),
                      torch.zeros(b, 6, dtype=torch.long), torch.full((b, 2), 48.0), torch.ones(b))
    assert not masks.any()


def test_cutout_bit_masks_keep_a_fakes_diff_pixels():
    x, lm = _cutout_batch(b=200)
    b = x.shape[0]
    # the SSIM diff of the fake lies in the bottom-right quarter only
    diff = np.zeros((96, 96), np.uint8)
    diff[70:90, 70:90] = 200
    counts = torch.from_numpy(bit_mask_counts(diff, 96, 96)).expand(b, 6)
    keep = bit_mask_keep(96, 96)
    assert [int((keep[i] & (diff > 0)).sum()) for i in range(6)] == counts[0].tolist()
    labels = torch.ones(b)  # all fakes
    cut = SelimCutout(landmark_p=0.0, hull_p=0.0, bitmask_p=1.0)
    params = cut.sample_params(x.shape, generator=torch.Generator().manual_seed(1))
    masks = cut.masks(x.shape, params, lm, torch.ones(b, dtype=torch.bool), labels, counts,
                      torch.full((b, 2), 48.0), torch.ones(b))[:, 0]
    changed = torch.from_numpy(diff > 0)
    applied = masks.flatten(1).any(1)
    assert applied.sum() > b // 2
    for i in range(b):  # every applied mask leaves the diff pixels visible
        assert not (masks[i] & changed).any()
    # reals take any draw: some masks cover the corner
    masks = cut.masks(x.shape, params, lm, torch.ones(b, dtype=torch.bool), torch.zeros(b), counts,
                      torch.full((b, 2), 48.0), torch.ones(b))[:, 0]
    assert (masks & changed).flatten(1).any(1).any()
    assert len(BIT_MASKS) == 6


def test_reencode_has_the_asked_size_and_frame_rate():
    yy, xx = np.mgrid[0:64, 0:48]
    frames = np.stack([np.stack([(xx * 4 + t * 4) % 256, yy * 3, np.full_like(xx, 128)], -1) for t in range(30)])
    frames = frames.astype(np.uint8)  # smooth, moving: frames differ
    params = ReencodeParams(fps=15.0, height=32, width=24, crf=23, tune="film")
    out = reencode(frames, 30.0, params)
    assert out.shape == (15, 32, 24, 3) and out.dtype == np.uint8
    assert list(output_frames(30, 30.0, 15.0)) == list(range(0, 30, 2))
    same = reencode(frames, 30.0, ReencodeParams(30.0, 64, 48, 17, "zerolatency"))
    assert same.shape == frames.shape
    assert np.abs(same.astype(int) - frames.astype(int)).mean() < 8  # CRF 17 keeps the picture
    assert list(map_indices([19, 25, 31], 50, 25)) == [10, 12, 16]


def test_reencode_draw_follows_their_ranges():
    draws = [Reencode().sample(random.Random(i), 30.0, 180, 120) for i in range(400)]
    done = [d for d in draws if d is not None]
    assert 150 < len(done) < 250  # p 0.5
    assert all(15 <= d.fps <= 30 and 17 <= d.crf < 40 and d.height % 2 == 0 and d.width % 2 == 0 for d in done)
    assert any(d.fps < 30 for d in done) and any(d.fps == 30 for d in done)
    assert any(d.height < 180 for d in done) and min(d.height for d in done) >= 44
    assert {d.tune for d in done} == {"film", "animation", "grain", "stillimage", "fastdecode", "zerolatency"}
    with pytest.raises(ValueError):
        Reencode(tunes=["bogus"])


def test_balanced_bce_averages_the_fakes_and_the_reals_loss():
    from types import SimpleNamespace

    import torch.nn.functional as F

    from dfdc_fast.train.step import TrainStep

    logits = torch.tensor([2.0, -1.0, 0.5, 0.3, -2.0])
    labels = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0])
    step = SimpleNamespace(loss="balanced_bce", label_smoothing=0.0)
    want = (F.binary_cross_entropy_with_logits(logits[:3], labels[:3])
            + F.binary_cross_entropy_with_logits(logits[3:], labels[3:])) / 2
    assert torch.allclose(TrainStep._loss(step, logits, labels), want)
    smooth = SimpleNamespace(loss="bce", label_smoothing=0.01)
    assert torch.allclose(TrainStep._loss(smooth, logits, labels),
                          F.binary_cross_entropy_with_logits(logits, labels.clamp(0.01, 0.99)))
