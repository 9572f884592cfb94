"""Face detection. ``Detections`` is the result type shared with tracking and cropping."""
from dfdc_fast.detect.types import Detections

__all__ = ["Detections"]
