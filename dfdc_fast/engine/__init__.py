"""The video→faces engine shared by extraction and inference.

``Engine(request, device, workers)`` runs :class:`FacesRequest` on many videos in worker
processes (one per NVDEC engine on a GPU, one per core on a CPU); each video goes
decode (YUV, on the device) → detect (MTCNN on the sampled frames, converted and
resized in one kernel) → track (3D connected components) → cut (every clip and crop of
the video in one kernel), and comes back as a :class:`VideoFaces`.

    from dfdc_fast.engine import Engine, FacesRequest, ClipSpec, CropSpec, VideoTask
    request = FacesRequest(clips=ClipSpec(256), crops=CropSpec(32))
    with Engine(request, "cuda") as engine:
        for faces in engine.run(VideoTask(i, p) for i, p in enumerate(paths)):
            faces.status, faces.tracks, faces.clip(faces.clips[0])
"""
from dfdc_fast.crops.boxes import int_box
from dfdc_fast.engine.path import FacePath, crop_frames
from dfdc_fast.engine.pool import NVDEC_ENGINES, Engine, default_workers
from dfdc_fast.engine.request import (ClipMeta, ClipSpec, CropMeta, CropSpec, FacesRequest, VideoFaces, VideoTask,
                                      track_json, tracks_from_json)

__all__ = ["Engine", "FacePath", "FacesRequest", "ClipSpec", "CropSpec", "VideoTask", "VideoFaces", "ClipMeta",
           "CropMeta", "default_workers", "NVDEC_ENGINES", "crop_frames", "int_box", "track_json",
           "tracks_from_json"]
