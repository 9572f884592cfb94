"""track_faces on synthetic detection sequences with known answers."""
import pytest
import torch

from dfdc_fast import extension
from dfdc_fast.detect import Detections
from dfdc_fast.track import FaceTrack, TrackConfig, interpolate_boxes, track_faces

pytestmark = pytest.mark.skipif(not extension._has_ops(), reason="extension not built (run scripts/setup.sh)")

H, W, N, STEP = 1080, 1920, 300, 10
SAMPLES = list(range(0, N, STEP))  # 30 sampled frames


def box_at(x, y, size=200):
    return [x, y, x + size, y + 1.25 * size]


def detections(faces_at, device="cpu"):
    """faces_at(sample_number) -> list of (box, score) for that sampled frame."""
    boxes, scores = [], []
    for s in range(len(SAMPLES)):
        faces = faces_at(s)
        boxes.append([b for b, _ in faces] or None)
        scores.append([p for _, p in faces] or None)
    return Detections.from_lists(SAMPLES, boxes, scores, frame_size=(H, W), device=device)


def walker(x0, x1, y, score=0.99, present=lambda s: True):
    """A face moving linearly from x0 to x1 over the video, seen where present(s)."""
    return lambda s: [(box_at(x0 + (x1 - x0) * s / (len(SAMPLES) - 1), y), score)] if present(s) else []


def together(*people):
    return lambda s: [face for p in people for face in p(s)]


def spans(tracks):
    return [(t.chunk, t.start, t.stop) for t in tracks]


@pytest.mark.parametrize("method", ["mask", "iou"])
def test_two_people_give_two_tracks(method):
    dets = detections(together(walker(400, 500, 300, 0.95), walker(1300, 1300, 320, 0.99)))
    tracks = track_faces(dets, (N, H, W), method=method)
    assert spans(tracks) == [(0, 0, N), (0, 0, N)]
    a, b = tracks
    assert [a.track_id, b.track_id] == [0, 1]
    assert a.box.tolist() == pytest.approx([400, 300, 700, 550])  # union over the walk
    assert b.box.tolist() == pytest.approx([1300, 320, 1500, 570])
    assert a.score == pytest.approx(0.95) and b.score == pytest.approx(0.99)
    assert a.boxes.shape == (N, 4) and a.num_detections == 30 and not a.too_short
    # Per-frame boxes: the detections at sampled frames, linear in between, held after the last.
    assert a.boxes[10].tolist() == pytest.approx(box_at(400 + 100 / 29, 300))
    assert a.boxes[15].tolist() == pytest.approx(box_at(400 + 150 / 29, 300))
    assert a.boxes[299].tolist() == pytest.approx(box_at(500, 300))


def test_crossing_paths_merge_in_the_mask_but_not_in_the_iou_tracker():
    people = together(walker(200, 1500, 200), walker(1500, 200, 350))
    merged = track_faces(detections(people), (N, H, W), method="mask")
    assert spans(merged) == [(0, 0, N)]  # the 3D components touch where the faces cross
    assert merged[0].box.tolist() == pytest.approx([200, 200, 1700, 600])

    apart = track_faces(detections(people), (N, H, W), method="iou")
    assert spans(apart) == [(0, 0, N), (0, 0, N)]
    lr = [t for t in apart if t.boxes[0, 0] < t.boxes[-1, 0]]
    rl = [t for t in apart if t.boxes[0, 0] > t.boxes[-1, 0]]
    assert len(lr) == len(rl) == 1  # identities kept through the crossing
    assert lr[0].boxes[0].tolist() == pytest.approx(box_at(200, 200))
    assert rl[0].boxes[-1].tolist() == pytest.approx(box_at(200, 350))


@pytest.mark.parametrize("method", ["mask", "iou"])
def test_leaving_and_coming_back_gives_two_tracks(method):
    person = walker(600, 600, 300, present=lambda s: not 10 <= s < 15)
    tracks = track_faces(detections(person), (N, H, W), method=method)
    assert spans(tracks) == [(0, 0, 100), (0, 150, 300)]


def test_single_missed_detections_are_bridged():
    misses = {5, 12, 20}
    person = walker(600, 800, 300, present=lambda s: s not in misses)
    [track] = track_faces(detections(person), (N, H, W))
    assert (track.start, track.stop, track.num_detections) == (0, N, 27)
    # the box at a missed sample is interpolated from its neighbours
    assert track.boxes[50].tolist() == pytest.approx(box_at(600 + 200 * 5 / 29, 300))
    # two misses in a row are a real gap
    person = walker(600, 800, 300, present=lambda s: s not in {5, 6})
    assert spans(track_faces(detections(person), (N, H, W))) == [(0, 0, 50), (0, 70, 300)]
    # the IoU tracker has no gap filling: each miss ends a track
    assert len(track_faces(detections(walker(600, 800, 300, present=lambda s: s not in misses)), (N, H, W), method="iou")) == 4


@pytest.mark.parametrize("method", ["mask", "iou"])
def test_short_false_positives_are_dropped(method):
    person = walker(600, 600, 300)
    blip = lambda s: [(box_at(1500, 700, 80), 0.95)] if s == 13 else []  # noqa: E731
    glimpse = lambda s: [(box_at(100, 700, 80), 0.95)] if 20 <= s < 23 else []  # noqa: E731
    tracks = track_faces(detections(together(person, blip, glimpse)), (N, H, W), method=method)
    assert spans(tracks) == [(0, 0, N)]
    # four samples pass the filters (40 frames >= 30) but are too short for a 3D clip
    brief = lambda s: [(box_at(100, 700, 80), 0.95)] if 20 <= s < 24 else []  # noqa: E731
    tracks = track_faces(detections(together(person, brief)), (N, H, W), method=method)
    assert spans(tracks) == [(0, 0, N), (0, 200, 240)]
    assert [t.too_short for t in tracks] == [False, True]


def test_chunks_are_tracked_separately_in_one_batch():
    person = walker(200, 1200, 300)
    tracks = track_faces(detections(person), (N, H, W), chunk_size=150)
    assert spans(tracks) == [(0, 0, 150), (1, 150, 300)]
    first, second = tracks
    assert first.box[2] < second.box[2]  # each chunk has its own, smaller box
    assert first.box.tolist() == pytest.approx([200, 300, 200 + 1000 * 14 / 29 + 200, 550])
    assert all(t.boxes.shape == (150, 4) for t in tracks)


def test_length_limits_order_and_box_options():
    people = together(walker(100, 100, 300, 0.91), walker(700, 700, 300, 0.99), walker(1300, 1300, 300, 0.95))
    dets = detections(people)
    assert [t.stop - t.start for t in track_faces(dets, (N, H, W), max_frames=100)] == [100, 100, 100]
    by_score = track_faces(dets, (N, H, W), order="score", max_faces=2)
    assert [round(t.score, 2) for t in by_score] == [0.99, 0.95] and [t.track_id for t in by_score] == [0, 1]
    [sq] = track_faces(detections(walker(1800, 1800, 900)), (N, H, W), square=True, pad=0.1)
    x0, y0, x1, y1 = sq.box.tolist()
    assert x1 - x0 == pytest.approx(y1 - y0) and x1 <= W and y1 <= H and x0 >= 0
    assert y1 == H  # a padded box at the bottom edge is shifted up, not cut


def test_shorter_video_and_sampling_edge_cases():
    dets = detections(walker(600, 600, 300))
    [t] = track_faces(dets, (295, H, W))
    assert t.stop == 295
    assert track_faces(dets, None)[0].stop == 300  # one step after the last sample
    with pytest.raises(ValueError, match="frame size"):
        track_faces(dets, (N, 720, 1280))
    with pytest.raises(ValueError, match="method"):
        track_faces(dets, (N, H, W), method="kalman")
    empty = detections(lambda s: [])
    assert track_faces(empty, (N, H, W)) == [] and track_faces(empty, (N, H, W), method="iou") == []


def test_config_object_and_dict_round_trip():
    cfg = TrackConfig(method="iou", iou={"sigma_h": 0.5})
    assert cfg.iou.sigma_h == 0.5
    [t] = track_faces(detections(walker(600, 600, 300, 0.6)), (N, H, W), cfg)
    d = t.to_dict()
    assert d["start"] == 0 and d["stop"] == N and len(d["box"]) == 4 and "FaceTrack(id=0" in repr(t)
    assert isinstance(t, FaceTrack)


def test_interpolate_boxes_holds_and_blends():
    kf = torch.tensor([10, 20])
    kb = torch.tensor([[0.0, 0, 10, 10], [10.0, 0, 20, 10]])
    out = interpolate_boxes(kf, kb, 5, 25)
    assert out.shape == (20, 4)
    assert out[0].tolist() == [0, 0, 10, 10] and out[-1].tolist() == [10, 0, 20, 10]
    assert out[10].tolist() == [5, 0, 15, 10]  # frame 15


@pytest.mark.cuda
@pytest.mark.parametrize("method", ["mask", "iou"])
def test_cuda_tracks_equal_cpu_tracks(method):
    people = together(walker(200, 1500, 200), walker(1500, 200, 350), walker(600, 600, 800, present=lambda s: s % 7))
    cpu = track_faces(detections(people), (N, H, W), method=method, chunk_size=150)
    gpu = track_faces(detections(people, device="cuda"), (N, H, W), method=method, chunk_size=150)
    assert spans(cpu) == spans(gpu) and len(cpu) > 0
    for c, g in zip(cpu, gpu):
        assert g.boxes.is_cuda and torch.allclose(g.boxes.cpu(), c.boxes) and torch.allclose(g.box.cpu(), c.box)


def test_gap_fill_modes_with_two_people_on_screen():
    # person A misses sample 5 while B is visible: the slice is not empty
    people = together(walker(300, 300, 300, present=lambda s: s != 5), walker(1300, 1300, 300))
    medics = track_faces(detections(people), (N, H, W))  # fill_gaps="slice"
    assert spans(medics) == [(0, 0, 50), (0, 0, N), (0, 60, N)]
    bridged = track_faces(detections(people), (N, H, W), fill_gaps="pixel")
    assert spans(bridged) == [(0, 0, N), (0, 0, N)]
    alone = walker(300, 300, 300, present=lambda s: s != 5)
    assert spans(track_faces(detections(alone), (N, H, W), fill_gaps="none")) == [(0, 0, 50), (0, 60, N)]
    with pytest.raises(ValueError, match="fill_gaps"):
        track_faces(detections(alone), (N, H, W), fill_gaps=True)
