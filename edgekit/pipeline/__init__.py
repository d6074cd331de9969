"""The build pipeline: load → prune → export → quantize → lower → verify → package."""

from .build import BuildResult, build
from .stages import Stage, StageEvent, StageState

__all__ = ["BuildResult", "Stage", "StageEvent", "StageState", "build"]
