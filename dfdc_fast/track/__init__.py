"""Face tracking: 3D connected components over a face mask (the Medics) or an IoU tracker.

``label3d`` and ``component_stats`` are the native ops (``csrc/``) underneath.
"""
from dfdc_fast.ops import CONNECTIVITIES, component_stats, label3d
from dfdc_fast.track.boxes import interpolate_boxes
from dfdc_fast.track.faces import TrackConfig, link_persons, track_faces
from dfdc_fast.track.iou import IouSettings
from dfdc_fast.track.mask import draw_mask, fill_gaps
from dfdc_fast.track.types import FaceTrack

__all__ = [
    "CONNECTIVITIES",
    "FaceTrack",
    "IouSettings",
    "TrackConfig",
    "component_stats",
    "draw_mask",
    "fill_gaps",
    "interpolate_boxes",
    "label3d",
    "link_persons",
    "track_faces",
]
