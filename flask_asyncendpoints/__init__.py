"""flask-asyncendpoints: the asynchronous request-reply pattern for Flask."""

from __future__ import annotations

from .errors import (
    AsyncEndpointsError,
    ConfigurationError,
    InvalidPayload,
    JobCanceled,
    JobFailure,
    JobIdConflict,
    ProblemError,
    StoreError,
)
from .extension import AsyncEndpoints
from .handlers import JobContext
from .jobs import ExceptionInfo, Job, JobError, JobStatus, Progress
from .stores import CancelResult, PendingLimitReached
from .views import problem

__version__ = "0.1.0"

__all__ = [
    "AsyncEndpoints",
    "AsyncEndpointsError",
    "CancelResult",
    "ConfigurationError",
    "ExceptionInfo",
    "InvalidPayload",
    "Job",
    "JobCanceled",
    "JobContext",
    "JobError",
    "JobFailure",
    "JobIdConflict",
    "JobStatus",
    "PendingLimitReached",
    "ProblemError",
    "Progress",
    "StoreError",
    "__version__",
    "problem",
]
