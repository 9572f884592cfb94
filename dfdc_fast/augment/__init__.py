"""Batched, device-side augmentations for clips ``(B, C, T, H, W)`` and images
``(B, C, H, W)`` in [0, 1], with per-sample parameters drawn from an optional
``torch.Generator`` (``sample_params``) separately from their use (``apply``).

``clip``: the Medics' 3D training/test transforms; ``cutmix``: 3D CutMix, 2D CutMix, MixUp
and their mixed losses; ``image``: Selim Seferbekov's and Ian Pan's 2D sets; ``cutout``:
Selim's landmark / face-half / bit-mask cut-outs; ``reencode``: NTechLab's x264 re-encode
(CPU, in loader workers; imported from its module). kornia is
needed only by ``SelimImageAugment`` (JPEG, hue/saturation) and is imported when used.
"""
from dfdc_fast.augment._common import Augment
from dfdc_fast.augment.clip import (ClipAugment, ClipEval, medics_clip_augment, medics_clip_eval,
                                    sample_resized_crop)
from dfdc_fast.augment.cutout import SelimCutout, bit_mask_counts
from dfdc_fast.augment.cutmix import (CutMix3d, CutMixResult, cutmix2d, cutmix3d, mixed_bce_loss,
                                      mixed_ce_loss, mixup)
from dfdc_fast.augment.image import (IanPanImageAugment, SelimImageAugment, fancy_pca, isotropic_resize_pad,
                                     mixup_or_cutmix2d, to_gray3)

__all__ = [
    "Augment",
    "ClipAugment", "ClipEval", "medics_clip_augment", "medics_clip_eval", "sample_resized_crop",
    "CutMix3d", "CutMixResult", "cutmix2d", "cutmix3d", "mixed_bce_loss", "mixed_ce_loss", "mixup",
    "IanPanImageAugment", "SelimImageAugment", "fancy_pca", "isotropic_resize_pad", "mixup_or_cutmix2d",
    "to_gray3", "SelimCutout", "bit_mask_counts",
]
