"""The per-video path: decode → detect → track → cut, with a bounded number of host syncs.

Frames stay as the decoder produced them (NV12 on a GPU, I420 on a CPU) and only the
pixels that are used become RGB, through one ``crop_resize`` call each: the sampled
frames at the detector's size, every face clip of the video, every crop. The host
learns what it must (the tracks) in one transfer after detection; the cut regions are
computed on the host from those numbers and sent back as one small table.

Host syncs per video on a GPU (what ``OpCounter`` counts on a CPU, and the tests bound):
detection (a few per call), tracking (one), the host copy of the outputs (one).
"""
from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import replace
from typing import Optional

import numpy as np
import torch

from dfdc_fast.detect import MTCNN, Detections
from dfdc_fast.engine.request import (NO_TRACK, ClipMeta, CropMeta, FacesRequest, PairMeta, VideoFaces, VideoTask,
                                      WindowMeta, tracks_from_json)
from dfdc_fast.engine.segments import MergedSegments, expected_frames
from dfdc_fast.io import VideoDecodeError, open_reader
from dfdc_fast.io.base import DecodePlan, VideoReader
from dfdc_fast.io.selectors import First, as_selector
from dfdc_fast.io.types import RawVideo
from dfdc_fast.crops.boxes import grown_box, int_box, margin_box, smallest_side_crop, square_window
from dfdc_fast.crops.resize import reflect_pad
from dfdc_fast.ops import crop_resize, out_extent, roi_rows
from dfdc_fast.runtime import fetch, to_device
from dfdc_fast.track import link_persons, track_faces

log = logging.getLogger("dfdc_fast.engine")

#: Test hook: ``crash:<text>`` ends the worker process abruptly, ``hang:<text>`` blocks
#: it, when a video path contains <text> (tests of worker replacement and timeouts).
FAULT_ENV = "DFDC_FAST_FAULT"


def crop_frames(num_frames: int, k: int) -> list[int]:
    """``k`` evenly spaced frames, first and last included (as Selim sampled)."""
    if k <= 0 or num_frames <= 0:
        return []
    if k == 1:
        return [0]
    return sorted({round(i * (num_frames - 1) / (k - 1)) for i in range(k)})


class FacePath:
    """Runs a :class:`FacesRequest` on one video at a time, on ``device``.

    Holds one reader (its decoder session is reused across videos) and the detectors.
    ``run`` never raises for a bad video: the result carries the status.
    """

    def __init__(self, request: FacesRequest, device: torch.device | str = "cpu", decoder: str = "auto",
                 decoder_threads: int = 0):
        self.request = request
        self.device = torch.device(device)
        options = {"threads": decoder_threads} if decoder in ("pyav",) or (
            decoder == "auto" and self.device.type != "cuda") else {}
        self.reader = open_reader(decoder, self.device, **options)
        self.decoder = self.reader.name
        cfg = request.detector_config
        # The engine resizes frames itself (fused with the YUV conversion), so the nets get
        # them at their final size: the detector's own resize is switched off.
        self.detector_config = cfg
        self.detector = MTCNN(self.device, cfg, scale=None, long_side=None, size_rule=None)
        #: Frames per segment when this request's videos stream (``FacesRequest.segment_frames``),
        #: else None. Every video of a streaming request streams, one segment or many: a header
        #: that under-reports the frame count cannot make a video be held whole.
        streams = request.stream_blocker is None and type(self.reader).iter_raw is not VideoReader.iter_raw
        self.segment_frames = request.segment_frames if streams else None
        #: Called with (task, stage) as each video enters "decode", "detect" and "cut", so a
        #: job's progress bar moves within a video (the first takes the longest).
        self.on_stage = None

    # ---- public ---------------------------------------------------------------------

    def run(self, task: VideoTask) -> VideoFaces:
        _inject_fault(task.path)
        result = VideoFaces(key=task.key, path=task.path)
        t0 = time.perf_counter()
        self._stage(task, "decode")
        try:
            self._check_limits(task)
            if self.segment_frames is not None:
                return self._run_streamed(task, result)
            raw = self._decode(task)
        except VideoDecodeError as exc:
            result.status, result.error = "decode_error", exc.cause
            return result
        except Exception as exc:  # noqa: BLE001 - a bad video must not stop the job
            result.status, result.error = "error", f"{type(exc).__name__}: {exc}"
            return result
        result.timings["decode_s"] = time.perf_counter() - t0
        result.info, result.decoder, result.frames_decoded = raw.info, raw.decoder, len(raw)
        try:
            self._stage(task, "detect")
            self._faces(task, raw, result)
        except Exception as exc:  # noqa: BLE001
            log.exception("%s failed", task.path)
            result.status, result.error = "error", f"{type(exc).__name__}: {exc}"
            _without_outputs(result)
        return self._with_peak_memory(result)

    def _with_peak_memory(self, result: VideoFaces) -> VideoFaces:
        if self.device.type == "cuda":
            result.peak_memory_mb = round(torch.cuda.max_memory_allocated(self.device) / 2**20, 1)
        return result

    # ---- stages -----------------------------------------------------------------------

    def _stage(self, task: VideoTask, stage: str) -> None:
        if self.on_stage is not None:
            self.on_stage(task, stage)

    def _frames(self, task: VideoTask):
        frames = self.request.frames
        if task.max_frames is not None:
            sel = as_selector(frames)
            frames = First(task.max_frames) if frames is None or isinstance(sel, First) and sel.n > task.max_frames \
                else frames
        return frames

    def _check_limits(self, task: VideoTask) -> None:
        """Refuse, from the header alone, a video whose decoded frames would exceed the
        request's limits (a few KB of H.264 can declare gigabytes of frames)."""
        req = self.request
        if req.max_frame_pixels is None and req.max_frames is None:
            return
        info = self.reader.info(task.path)
        pixels = info.width * info.height
        if req.max_frame_pixels is not None and pixels > req.max_frame_pixels:
            raise VideoDecodeError(task.path, f"frames of {info.width}x{info.height} exceed the limit of "
                                              f"{req.max_frame_pixels} pixels (max_frame_pixels); not decoded")
        n = DecodePlan.make(self._frames(task), max(info.num_frames, 0)).capacity(max(info.num_frames, 0))
        if req.max_frames is not None and n > req.max_frames:
            raise VideoDecodeError(task.path, f"{n} frames to decode exceed the limit of {req.max_frames} "
                                              "(max_frames); not decoded")

    def _run_streamed(self, task: VideoTask, result: VideoFaces) -> VideoFaces:
        """:meth:`run` a segment at a time: each segment is decoded, detected, tracked and
        cut, its outputs kept and its frames let go before the next is decoded. Tracks are
        numbered and linked into persons across segments as one pass over the video would."""
        frames, limit = self._decode_frames(task)
        merged = MergedSegments(result, images=self.request.crops is not None and self.request.crops.encode is None)
        own: list = []  # this video's own tracks so far (not its original's)
        reuse_all = task.original_tracks is not None and self.request.reuse == "all"
        parts = self.reader.iter_raw(task.path, frames, self.segment_frames)
        t0 = time.perf_counter()
        try:
            for raw in parts:
                merged.timings["decode_s"] = merged.timings.get("decode_s", 0.0) + time.perf_counter() - t0
                end = int(raw.indices[-1]) + 1 if len(raw) else 0
                if limit is not None and end > limit:
                    raise _over_limit(task, limit, raw)
                if len(raw):
                    self._stage(task, "detect")
                    part = VideoFaces(key=task.key, path=task.path, info=raw.info)
                    total = end if raw.last else max(end, expected_frames(frames, raw.info.num_frames))
                    self._faces(task, raw, part, prior=own if merged.parts else None, total=total)
                    if not reuse_all:
                        own.extend(part.tracks)
                    merged.add(part)
                result.info, result.decoder = raw.info, raw.decoder
                result.frames_decoded += len(raw)
                del raw
                t0 = time.perf_counter()
        except VideoDecodeError as exc:
            result.status, result.error, result.info = "decode_error", exc.cause, None
            return _without_outputs(result)
        except Exception as exc:  # noqa: BLE001 - a bad video must not stop the job
            log.exception("%s failed", task.path)
            result.status, result.error = "error", f"{type(exc).__name__}: {exc}"
            return _without_outputs(result)
        finally:
            parts.close()
        merged.finish()
        return self._with_peak_memory(result)

    def _decode_frames(self, task: VideoTask) -> tuple:
        """The frames to decode and the request's frame limit."""
        frames, limit = self._frames(task), self.request.max_frames
        if frames is None and limit is not None:
            frames = First(limit + 1)  # a header may under-report the count: decoding stops past the limit too
        return frames, limit

    def _decode(self, task: VideoTask) -> RawVideo:
        frames, limit = self._decode_frames(task)
        raw = self.reader.read_raw(task.path, frames)
        if limit is not None and len(raw) > limit:
            raise _over_limit(task, limit, raw)
        return raw

    def _faces(self, task: VideoTask, raw: RawVideo, result: VideoFaces, prior: Optional[list] = None,
               total: Optional[int] = None) -> None:
        """Detect, track and cut ``raw``: the whole video, or one segment of it, whose tracks
        follow the video's ``prior`` tracks (a later segment; None for the first) and which
        has ``total`` frames in all (None: ``raw`` is the whole video)."""
        req, info = self.request, raw.info
        t0 = time.perf_counter()
        kept = self._kept(raw)
        positions = kept[::req.every]
        reuse_all = task.original_tracks is not None and req.reuse == "all" and req.track is not None
        first, end = (int(raw.indices[0]), int(raw.indices[-1]) + 1) if len(raw) else (0, 0)

        def in_range(ts):
            return [t for t in ts if first <= t.start and t.stop <= end]

        if reuse_all:
            # The original's tracks serve every output (the Medics' export): a fake whose
            # original's record exists is neither resized for, nor run through, the detector.
            dets = None
            tracks = in_range(tracks_from_json(task.original_tracks))
            result.detections = {"sampled_frames": 0, "faces": torch.zeros(0, dtype=torch.int64), "retried": False,
                                 "skipped": "tracks of the original"}
        else:
            dets = self._detect(raw, positions, self.detector_config.resize_factor(info.height, info.width))
            tracks = self._track(raw, dets, prior) if req.track is not None else []
            if not tracks and req.retry_scale is not None and req.track is not None:
                factor = self.detector_config.resize_factor(info.height, info.width) * req.retry_scale
                retry = self._detect(raw, positions, factor)
                tracks = self._track(raw, retry)
                if tracks:
                    dets = retry
            result.detections = {"sampled_frames": len(dets), "faces": dets.counts,
                                 "retried": req.retry_scale is not None}
        result.timings["detect_track_s"] = time.perf_counter() - t0
        result.tracks = tracks

        clip_tracks = crop_tracks = tracks
        if reuse_all:
            result.boxes_from = "original"
        elif task.original_tracks is not None and req.reuse != "none":
            reused = in_range(tracks_from_json(task.original_tracks))
            crop_tracks, result.boxes_from = reused, "original"
        host_dets = None
        if req.track is None:  # no tracks: the detections themselves, read in one transfer
            host_dets = fetch(dets.boxes, dets.scores, dets.counts,
                              *((dets.landmarks,) if dets.landmarks is not None else ()))
            found = bool(host_dets[2].sum())
            result.status = "ok" if found else "no_face"
        else:
            result.status = "ok" if tracks or (result.boxes_from == "original" and crop_tracks) else "no_face"
        result.error = None if result.status == "ok" else NO_TRACK

        self._stage(task, "cut")
        t1 = time.perf_counter()
        pos_of = self._positions(raw)
        if req.clips is not None and clip_tracks:
            self._cut_clips(raw, clip_tracks, pos_of, result)
        if req.crops is not None and req.crops.mode == "detections":
            if host_dets is not None and result.status == "ok":
                self._cut_detection_crops(raw, dets.frame_indices.numpy(), host_dets, pos_of, result)
        elif req.crops is not None and crop_tracks and req.crops.count > 0:
            self._cut_crops(raw, crop_tracks, pos_of, result, total)
            if req.diffs is not None and task.original_crops is not None and result.crops:
                self._diffs(task, result)
        if req.pairs is not None:
            if task.pair_count > 0 and tracks:
                self._cut_pair_windows(raw, task, tracks, pos_of, result)
            elif task.pair_windows and task.original_tracks is not None and tracks:
                self._cut_fake_pairs(raw, task, tracks, pos_of, result)
        for spec in req.windows:
            result.windows.append(self._cut_windows(raw, spec, tracks, kept, pos_of))
        result.timings["cut_s"] = time.perf_counter() - t1
        t2 = time.perf_counter()
        self._to_host(result)
        result.detections["faces"] = int(result.detections["faces"].numpy().sum())
        result.timings["host_copy_s"] = time.perf_counter() - t2

    def _kept(self, raw: RawVideo) -> np.ndarray:
        """Positions of the decoded frames the request works on: all, or every
        ``round(fps / sample_fps)``-th (NTechLab decoded at ~15 fps)."""
        n = len(raw)
        fps = self.request.sample_fps
        if fps is None:
            return np.arange(n)
        step = max(1, int(round((raw.info.fps or fps) / fps)))
        return np.arange(0, n, step)

    def _rois_rgb(self, raw: RawVideo, rois: np.ndarray, out_size: tuple[int, int], up_mode: str = "bilinear"):
        info = raw.info
        return crop_resize(raw.data, to_device(rois, raw.data.device), out_size, layout=raw.layout,
                           matrix=info.color_matrix, full_range=info.full_range, rotation=info.rotation,
                           up_mode=up_mode)

    def _detect(self, raw: RawVideo, positions: np.ndarray, factor: float) -> Detections:
        info = raw.info
        h, w = info.height, info.width
        dh, dw = (max(1, round(h * factor)), max(1, round(w * factor))) if factor != 1.0 else (h, w)
        rois = roi_rows(len(positions), frame=positions, window=(0, 0, w, h), out=(dw, dh))
        frames = self._rois_rgb(raw, rois, (dh, dw))
        fi = raw.indices.numpy()[positions]
        found = self.detector.detect(frames, torch.from_numpy(fi))
        if (dh, dw) == (h, w):
            return found
        sx, sy = w / dw, h / dh
        scale = torch.tensor([sx, sy, sx, sy], dtype=torch.float32).to(found.device, non_blocking=True)
        landmarks = None if found.landmarks is None else found.landmarks * scale[:2]
        return Detections(frame_indices=found.frame_indices, boxes=found.boxes * scale, scores=found.scores,
                          counts=found.counts, frame_size=(h, w), landmarks=landmarks)

    def _track(self, raw: RawVideo, dets: Detections, prior: Optional[list] = None) -> list:
        """The tracks of ``raw``; after ``prior`` (the tracks of the video's earlier
        segments) they are numbered on from those and linked to their persons."""
        cfg = self.request.track
        if prior is not None:  # a later segment may hold one sampled frame: the video's step
            cfg = replace(cfg, frame_step=cfg.frame_step or self.request.every)
        n = len(raw)
        if self.request.relax_short:
            samples = -(-n // self.request.every)
            if n < cfg.min_frames or samples < cfg.min_detections:  # few frames: ask for what there can be
                cfg = replace(cfg, min_frames=min(cfg.min_frames, max(1, n // 2)),
                              min_detections=min(cfg.min_detections, max(1, samples // 2)))
        last = int(raw.indices.numpy()[-1]) + 1 if n else 0
        tracks = track_faces(dets, (last, raw.info.height, raw.info.width), cfg, device="cpu")
        if prior:
            for i, t in enumerate(tracks):
                t.track_id = len(prior) + i
            link_persons(prior + tracks, cfg.link_iou)  # earlier tracks keep their persons: linking is in time order
        return tracks

    @staticmethod
    def _positions(raw: RawVideo) -> np.ndarray:
        idx = raw.indices.numpy()
        pos_of = np.full(int(idx.max()) + 1 if idx.size else 0, -1, dtype=np.int64)
        pos_of[idx] = np.arange(idx.size)
        return pos_of

    def _cut_clips(self, raw: RawVideo, tracks: list, pos_of: np.ndarray, result: VideoFaces) -> None:
        spec = self.request.clips
        h, w = raw.info.height, raw.info.width
        rows, metas, offset = [], [], 0
        for t in tracks:
            frames = np.arange(t.start, min(t.stop, pos_of.size))
            frames = frames[pos_of[frames] >= 0]
            if frames.size != t.stop - t.start:
                raise ValueError(f"track {t.track_id} spans frames [{t.start}, {t.stop}) that were not all decoded")
            window = int_box(t.box.numpy(), h, w)
            side, ox, oy = square_window(window, center=spec.pad == "center")
            rows.append(roi_rows(frames.size, frame=pos_of[frames], window=window, offset=(ox, oy),
                                 canvas=(side, side), out=(spec.size, spec.size)))
            metas.append(ClipMeta(track=t.track_id, chunk=t.chunk, start=t.start, stop=t.stop,
                                  box=[round(float(v), 2) for v in t.box.numpy()], score=round(float(t.score), 5),
                                  too_short=bool(t.too_short), offset=offset, person=t.person))
            offset += frames.size
        result.clips = metas
        result.clip_frames = self._rois_rgb(raw, np.concatenate(rows), (spec.size, spec.size))

    def _cut_crops(self, raw: RawVideo, tracks: list, pos_of: np.ndarray, result: VideoFaces,
                   total: Optional[int] = None) -> None:
        spec = self.request.crops
        h, w = raw.info.height, raw.info.width
        picks = []  # (track, frame)
        if spec.mode == "evenly":
            indices = raw.indices.numpy()
            if total is None:
                frames = [int(indices[f]) for f in crop_frames(len(raw), spec.count)]
            else:  # a segment: the video's evenly spaced frames that it holds (every frame is decoded)
                frames = [f for f in crop_frames(total, spec.count) if f < pos_of.size and pos_of[f] >= 0]
            for frame in frames:
                picks += [(t, frame) for t in tracks if t.start <= frame < t.stop]
        elif spec.mode == "every":
            step = spec.every or self.request.every * self._step(raw)
            for t in tracks:
                first = -(-t.start // step) * step
                picks += [(t, f) for f in range(first, min(t.stop, pos_of.size), step) if pos_of[f] >= 0]
        else:
            for t in tracks:
                picks += [(t, f) for f in range(t.start, min(t.stop, t.start + spec.count))]
        if not picks:
            return
        boxes = np.stack([t.boxes.numpy()[f - t.start] for t, f in picks])
        points = [t.landmarks.numpy()[f - t.start] if t.landmarks is not None else None for t, f in picks]
        self._cut_native(raw, [(t.track_id, int(f), float(t.score), t.person) for t, f in picks], boxes, points, pos_of,
                         result)

    def _cut_detection_crops(self, raw: RawVideo, frame_indices: np.ndarray, host_dets: list, pos_of: np.ndarray,
                             result: VideoFaces) -> None:
        """One crop per detected face of every sampled frame (Selim's inference: no tracks)."""
        boxes, scores, counts = host_dets[:3]
        landmarks = host_dets[3] if len(host_dets) > 3 else None
        picks, bx, points = [], [], []
        for r, f in enumerate(frame_indices.tolist()):
            for k in range(int(counts[r])):
                picks.append((k, int(f), float(scores[r, k]), None))
                bx.append(boxes[r, k])
                points.append(landmarks[r, k] if landmarks is not None else None)
        if picks:
            self._cut_native(raw, picks, np.stack(bx).astype(np.float32), points, pos_of, result)

    def _cut_native(self, raw: RawVideo, picks: list, boxes: np.ndarray, points: list, pos_of: np.ndarray,
                    result: VideoFaces) -> None:
        """Crops (box + margin) at native size, all in one ``crop_resize`` call; ``picks`` are
        ``(track or face index, frame, score, person)``."""
        spec = self.request.crops
        h, w = raw.info.height, raw.info.width
        grown = margin_box(boxes, spec.margin, h, w)
        windows = np.asarray([int_box(g, h, w) for g in grown], dtype=np.int64).reshape(-1, 4)
        rois = roi_rows(len(picks), frame=pos_of[[f for _, f, _, _ in picks]], window=windows)  # native size: a copy
        metas = []
        for i, ((track, f, score, person), (x0, y0, x1, y1), b, pts) in enumerate(zip(picks, windows, boxes, points)):
            cw, ch = int(x1 - x0), int(y1 - y0)
            lm = None if pts is None else [round(float(v), 2) for v in (np.asarray(pts, np.float32).reshape(5, 2)
                                                                        - np.array([x0, y0], np.float32)).reshape(-1)]
            metas.append(CropMeta(track=track, frame=f, box=[round(float(v), 2) for v in b], offset=i,
                                  length=0, size=(ch, cw), landmarks=lm, score=round(score, 5), person=person))
        canvas = self._rois_rgb(raw, rois, out_extent(rois))
        result.crops = metas
        if spec.encode is None:
            result.crop_data = canvas
        else:
            self._encode_crops([canvas[i, :m.size[0], :m.size[1]] for i, m in enumerate(metas)], metas, result)

    def _step(self, raw: RawVideo) -> int:
        kept = self._kept(raw)
        return int(kept[1] - kept[0]) if kept.size > 1 else 1

    def _diffs(self, task: VideoTask, result: VideoFaces) -> None:
        """SSIM difference masks of a fake's crops against its original's (same track, frame
        and size), on the device; crops without a counterpart get none (``diff_error`` says)."""
        from dfdc_fast.crops.ssim import ssim_diff

        images, keys = task.original_crops
        where = {(int(k[0]), int(k[1])): (i, (int(k[2]), int(k[3]))) for i, k in enumerate(keys)}
        mine, theirs, missing = [], [], 0
        for i, m in enumerate(result.crops):
            found = where.get((m.track, m.frame))
            if found is None or found[1] != tuple(m.size):
                missing += 1
                continue
            mine.append(i)
            theirs.append(found[0])
        if missing:
            result.diff_error = f"{missing} of {len(result.crops)} crops have no original crop of the same size"
        if not mine:
            return
        canvas = result.crop_data
        dev = canvas.device
        ours = canvas[to_device(np.asarray(mine, dtype=np.int64), dev)]
        hm, wm = ours.shape[1:3]
        orig = to_device(images, dev)[to_device(np.asarray(theirs, dtype=np.int64), dev)]
        oh, ow = orig.shape[1:3]
        if (oh, ow) != (hm, wm):  # the two canvases were padded to different maxima
            orig = torch.nn.functional.pad(orig[:, :min(oh, hm), :min(ow, wm)],
                                           (0, 0, 0, max(0, wm - ow), 0, max(0, hm - oh)))
        sizes = np.asarray([result.crops[i].size for i in mine], dtype=np.int64)
        dtype = torch.float64 if self.request.diffs.dtype == "float64" else torch.float32
        result.diff_data = ssim_diff(orig, ours, sizes, dtype=dtype)
        for row, i in enumerate(mine):
            result.crops[i].diff = row

    # ---- NTechLab's pairs and windows ----------------------------------------------------

    def _cut_pair_windows(self, raw: RawVideo, task: VideoTask, tracks: list, pos_of: np.ndarray,
                          result: VideoFaces) -> None:
        """REAL video: ``pair_count`` windows per eligible track, drawn reproducibly."""
        import random

        spec = self.request.pairs
        h, w = raw.info.height, raw.info.width
        step = self.request.every * self._step(raw)
        metas = []
        for t in tracks:
            kf = t.keyframes.numpy()
            starts = [int(f) for f in kf if f + spec.length <= t.stop and f + spec.length <= pos_of.size]
            if kf.size < spec.min_detections or not starts:
                continue
            rng = random.Random(f"{task.seed_text}/{t.track_id}")
            for k in range(task.pair_count):
                start = rng.choice(starts)
                mid = min(start + (spec.length // step) // 2 * step, t.stop - 1)
                box = _even(grown_box(t.boxes.numpy()[mid - t.start], spec.box_mult, h, w))
                metas.append(PairMeta(track=t.track_id, window=k, start=start, stop=start + spec.length,
                                      box=list(box)))
        self._cut_pairs(raw, metas, pos_of, result)

    def _cut_fake_pairs(self, raw: RawVideo, task: VideoTask, tracks: list, pos_of: np.ndarray,
                        result: VideoFaces) -> None:
        """FAKE video: align its tracks with its original's, cut the original's windows that
        an aligned track covers, with the original's boxes."""
        from dfdc_fast.track.pairs import align_tracks

        spec = self.request.pairs
        real = tracks_from_json(task.original_tracks)
        step = self.request.every * self._step(raw)

        def detections(ts):
            return [(t.keyframes.numpy(), t.boxes.numpy()[t.keyframes.numpy() - t.start]) for t in ts]

        aligned = {p.real: p for p in align_tracks(detections(real), detections(tracks), spec.min_detections,
                                                   spec.iou_threshold)}
        h, w = raw.info.height, raw.info.width
        metas, skipped = [], 0
        for win in task.pair_windows:
            p = aligned.get(int(win["track"]))
            box = [int(v) for v in win["box"]]
            inside = box[2] <= w and box[3] <= h and win["stop"] <= pos_of.size
            if p is None or not inside or win["start"] < p.start or win["stop"] > p.stop - 1 + step:
                skipped += 1
                continue
            metas.append(PairMeta(track=int(win["track"]), window=int(win["window"]), start=int(win["start"]),
                                  stop=int(win["stop"]), box=box, fake_track=tracks[p.fake].track_id,
                                  span=[p.start, p.stop]))
        result.detections["pairs_skipped"] = skipped
        self._cut_pairs(raw, metas, pos_of, result)

    def _cut_pairs(self, raw: RawVideo, metas: list, pos_of: np.ndarray, result: VideoFaces) -> None:
        """Every pair window of the video in one ``crop_resize`` call, packed flat."""
        if not metas:
            return
        rows = []
        for m in metas:
            positions = pos_of[np.arange(m.start, m.stop)]
            if (positions < 0).any():
                raise ValueError(f"pair window [{m.start}, {m.stop}) reaches frames that were not decoded")
            rows.append(roi_rows(m.stop - m.start, frame=positions, window=tuple(m.box)))  # native size
        rois = np.concatenate(rows)
        canvas = self._rois_rgb(raw, rois, out_extent(rois))
        parts, offset, row = [], 0, 0
        for m in metas:
            h, w = m.size
            n = m.stop - m.start
            parts.append(canvas[row:row + n, :h, :w].reshape(-1))
            m.offset = offset
            offset += n * h * w * 3
            row += n
        result.pairs = metas
        result.pair_data = torch.cat(parts)

    def _cut_windows(self, raw: RawVideo, spec, tracks: list, kept: np.ndarray, pos_of: np.ndarray) -> tuple:
        """NTechLab's inference windows of every track (see :class:`WindowSpec`)."""
        h, w = raw.info.height, raw.info.width
        frames_of = raw.indices.numpy()[kept]
        metas, rows, placed = [], [], []
        for t in tracks:
            inside = frames_of[(frames_of >= t.start) & (frames_of < t.stop)]
            for i, s in enumerate(range(0, inside.size - spec.length + 1, spec.stride)):
                frames = inside[s:s + spec.length]
                mid = int(inside[s + spec.length // 2])
                window = grown_box(t.boxes.numpy()[mid - t.start], spec.box_mult, h, w)
                nw, nh, dx, dy = smallest_side_crop(window, spec.min_size, spec.crop)
                block = roi_rows(frames.size, frame=pos_of[frames], window=window, out=(nw, nh), at=(dx, dy))
                metas.append(WindowMeta(track=t.track_id, index=i, frames=frames.tolist(),
                                        offset=sum(len(r) for r in rows)))
                rows.append(block)
                placed += [(dx, nw, dy, nh)] * frames.size
        if not rows:
            return metas, None
        images = self._rois_rgb(raw, np.concatenate(rows), spec.crop)
        if spec.pad == "reflect":
            images = reflect_pad(images, placed)
        return metas, images

    def _encode_crops(self, images: list, metas: list, result: VideoFaces) -> None:
        from torchvision.io import encode_jpeg, encode_png

        spec = self.request.crops
        chw = [im.permute(2, 0, 1) for im in images]
        if spec.encode == "jpg":
            encoded = encode_jpeg(chw, quality=spec.quality)
        else:
            encoded = [encode_png(c) for c in self._host_images(chw)]  # torchvision encodes PNG on the CPU only
        offset = 0
        for m, e in zip(metas, encoded):
            m.offset, m.length = offset, int(e.shape[0])
            offset += m.length
        result.crops = metas
        result.crop_data = torch.cat([e.to(encoded[0].device) for e in encoded]) if encoded else None

    def _host_images(self, images: list) -> list:
        """``images`` on the host, in one copy into pinned memory and one wait (a ``.cpu()``
        per image would make the host wait once per crop)."""
        if self.device.type != "cuda" or not images:
            return images
        flat = torch.cat([im.reshape(-1) for im in images])
        host = torch.empty(flat.shape, dtype=torch.uint8, pin_memory=True)
        host.copy_(flat, non_blocking=True)
        torch.cuda.current_stream(self.device).synchronize()
        out, pos = [], 0
        for im in images:
            out.append(host[pos:pos + im.numel()].view(im.shape))
            pos += im.numel()
        return out

    def _to_host(self, result: VideoFaces) -> None:
        """Counts, clips and crops to the host in one transfer (when the request asks for it)."""
        parts = [("faces", result.detections["faces"])]
        if self.request.to_host:
            for name in ("clip_frames", "crop_data", "diff_data", "pair_data"):
                value = getattr(result, name)
                if value is not None and value.device.type != "cpu":  # PNG crops are made on the host
                    parts.append((name, value))
        if self.device.type != "cuda":
            return
        flat = torch.cat([p.reshape(-1).view(torch.uint8) if p.dtype != torch.uint8 else p.reshape(-1)
                          for _, p in parts])
        host = torch.empty(flat.shape, dtype=torch.uint8, pin_memory=True)
        host.copy_(flat, non_blocking=True)
        torch.cuda.current_stream(self.device).synchronize()  # the one wait for this video's outputs
        pos = 0
        for name, p in parts:
            n = p.numel() * p.element_size()
            view = host[pos:pos + n].view(p.dtype).reshape(p.shape)
            pos += n
            if name == "faces":
                result.detections["faces"] = view
            else:
                setattr(result, name, view)


def _over_limit(task: VideoTask, limit: int, raw: RawVideo) -> VideoDecodeError:
    return VideoDecodeError(task.path, f"more than {limit} frames to decode (max_frames; the header said "
                                       f"{raw.info.num_frames}); refused")


def _without_outputs(result: VideoFaces) -> VideoFaces:
    """A failed video keeps no clips or crops (those of its segments done before the failure)."""
    result.clip_frames = result.crop_data = None
    result.clips, result.crops = [], []
    return result


def _even(box: tuple) -> tuple:
    """Trim a window's far edges so its sides are even (H.264 4:2:0 needs that), >= 2."""
    x0, y0, x1, y1 = box
    x1 = x0 + max(2, (x1 - x0) // 2 * 2)
    y1 = y0 + max(2, (y1 - y0) // 2 * 2)
    return x0, y0, x1, y1


def _inject_fault(path: str) -> None:
    spec = os.environ.get(FAULT_ENV, "")
    if ":" not in spec:
        return
    kind, text = spec.split(":", 1)
    if text and text in os.fspath(path):
        if kind == "crash":
            os._exit(70)
        if kind == "hang":
            time.sleep(3600)


__all__ = ["FacePath", "crop_frames"]
