"""Video-level inference: aggregation of face scores and the DFDC submission file."""
from dfdc_fast.infer.aggregate import (  # noqa: F401
    AGGREGATORS,
    FALLBACK_SCORES,
    NO_FACE_SCORE,
    aggregate,
    confident_strategy,
    fallback_score,
    medics,
    ntech_sharpen,
    selim,
)
from dfdc_fast.infer.submission import (  # noqa: F401
    balanced_log_loss,
    dfdc_log_loss,
    read_submission,
    validate_submission,
    write_submission,
)
from dfdc_fast.infer.budget import Budget, parse_duration  # noqa: F401
from dfdc_fast.infer.pipeline import InferConfig, VideoResult, list_videos, run_inference  # noqa: F401
