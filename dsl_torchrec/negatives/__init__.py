"""Candidate side of the training step: who competes with each row's positive, and their logQ."""

from .all_gather import all_gather_ids, all_gather_with_grad
from .candidates import CandidateSet, assemble_candidates
from .logq import ExpectedCountLogQ
from .sampler import UniformSampler

__all__ = [
    "CandidateSet", "ExpectedCountLogQ", "UniformSampler", "all_gather_ids",
    "all_gather_with_grad", "assemble_candidates",
]
