"""Face clips and 2D face crops cut on the device, plus their encoders.

``clip`` crops a track's union box from every frame, pads it to a square and resizes it
(the Medics' 3D training clips); ``faces`` crops single faces with a margin (Selim's 2D
crops). Encoding to MP4/JPEG happens on the host, in ``encode``.
"""
from dfdc_fast.crops.cut import clip, faces, margin_box
from dfdc_fast.crops.encode import write_jpeg, write_mp4
from dfdc_fast.crops.resize import letterbox

__all__ = ["clip", "faces", "letterbox", "margin_box", "write_jpeg", "write_mp4"]
