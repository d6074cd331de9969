"""The profiler: a watched worker process (native C++ runner or Python) measuring latency, memory and energy."""

from .harness import EnergyResult, MemoryResult, Phases, ProfileOptions, ProfileResult, profile

__all__ = ["EnergyResult", "MemoryResult", "Phases", "ProfileOptions", "ProfileResult", "profile"]
