"""Face detection: a batched MTCNN with facenet-pytorch's weights.

``Detections`` is the result type shared with tracking and cropping.
"""
from dfdc_fast.detect.mtcnn import MTCNN, PRESETS, MTCNNConfig
from dfdc_fast.detect.types import Detections

__all__ = ["Detections", "MTCNN", "MTCNNConfig", "PRESETS"]
