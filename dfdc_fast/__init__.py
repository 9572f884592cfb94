"""dfdc_fast: a GPU-native video toolkit for deepfake detection (DFDC).

Stages are submodules (``dfdc_fast.io``, ``dfdc_fast.data``, ...). Importing the package
needs neither a GPU, nor the compiled extension, nor DALI or PyNvVideoCodec; a missing
piece raises, when used, an error that says what to install.
"""
__version__ = "0.1.0"

from dfdc_fast.io import VideoDecodeError, read_video  # noqa: E402

__all__ = ["__version__", "VideoDecodeError", "read_video"]
