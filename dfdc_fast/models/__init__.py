"""Detection models by name: the DFDC winners' 3D and 2D networks, weights from local files only.

::

    from dfdc_fast.models import create_model, model_spec, normalize
    spec = model_spec("i3d")                      # kind, input_size, frames, normalization
    model = create_model("i3d", num_classes=1, pretrained="rgb_imagenet.pt")
    logits = model(normalize(clips, spec))        # clips: float (B, 3, T, H, W) in [0, 1]

Importing this package does not import timm or torchvision; the builders that need them do.
"""
from dfdc_fast.models.registry import (
    ModelSpec, create_model, list_models, load_pretrained, load_weights, memory_format_of, model_spec, normalize,
    register_model, to_channels_last,
)
from dfdc_fast.models import image, video  # noqa: E402,F401  (registers the models)
from dfdc_fast.models.checkpoint import (  # noqa: E402
    Checkpoint, drop_state, load_checkpoint, load_model, run_checkpoint, save_checkpoint,
)

__all__ = [
    "create_model", "list_models", "model_spec", "ModelSpec", "normalize", "register_model",
    "save_checkpoint", "load_checkpoint", "load_model", "Checkpoint", "load_weights", "load_pretrained",
    "to_channels_last", "memory_format_of", "drop_state", "run_checkpoint",
]
