"""Candidate side of the training step: who competes with each row's positive, and their logQ."""

from .all_gather import all_gather_ids, all_gather_with_grad
from .candidates import (
    SOURCE_IN_BATCH,
    SOURCE_MEMORY,
    SOURCE_SAMPLED,
    CandidateAssembler,
    CandidateSet,
    assemble_candidates,
    mask_same_user_,
)
from .frequency import ExactFrequency, StreamingFrequency
from .logq import ExpectedCountLogQ
from .memory import CrossBatchMemory
from .sampler import PopularitySampler, UniformSampler

__all__ = [
    "SOURCE_IN_BATCH", "SOURCE_MEMORY", "SOURCE_SAMPLED", "CandidateAssembler", "CandidateSet",
    "CrossBatchMemory", "ExactFrequency", "ExpectedCountLogQ", "PopularitySampler",
    "StreamingFrequency", "UniformSampler", "all_gather_ids", "all_gather_with_grad",
    "assemble_candidates", "mask_same_user_",
]
