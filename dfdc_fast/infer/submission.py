"""The submission file format, which inference writes and ``evaluate`` reads, lives in the
neutral :mod:`dfdc_fast.submission`; this name stays for the callers that import it here."""
from dfdc_fast.submission import (  # noqa: F401
    HEADER, balanced_log_loss, dfdc_log_loss, read_submission, validate_submission, write_submission,
)

__all__ = ["HEADER", "balanced_log_loss", "dfdc_log_loss", "read_submission", "validate_submission",
           "write_submission"]
