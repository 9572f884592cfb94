"""Face crops: the window rules (``boxes``), resizing to a model's input on the device
(``letterbox``), and the encoders to MP4/JPEG on the host (``encode``). The cutting itself
is one ``crop_resize`` call per video in the engine (``dfdc_fast.engine.path``).
"""
from dfdc_fast.crops.boxes import (clamp_window, grown_box, int_box, letterbox_placement, margin_box,
                                   smallest_side_crop, square_window)
from dfdc_fast.crops.encode import write_jpeg, write_mp4
from dfdc_fast.crops.resize import letterbox

__all__ = ["clamp_window", "grown_box", "int_box", "letterbox", "letterbox_placement", "margin_box",
           "smallest_side_crop", "square_window", "write_jpeg", "write_mp4"]
