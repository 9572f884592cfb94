"""Datasets: discovery of DFDC parts, metadata folders and plain folders of videos."""
from dfdc_fast.data.discovery import (
    LABELS, VIDEO_EXTENSIONS, Dataset, VideoEntry, discover, from_paths, is_video_file, safe_join,
)

__all__ = ["LABELS", "VIDEO_EXTENSIONS", "Dataset", "VideoEntry", "discover", "from_paths", "is_video_file", "safe_join"]
