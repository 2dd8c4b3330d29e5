"""Datasets: benchmark converters, synthetic generator, canonical directory + manifest, reader.

A dataset directory holds ``manifest.json`` and one parquet file per split (``train``,
optional ``valid``, ``test``) with int64 columns ``user_id`` and ``item_id``, deduplicated and
sorted by user.
"""

from .dataset import InteractionData
from .errors import DataError
from .formats import read_irb, read_lightgcn, read_pairs
from .manifest import Manifest
from .prepare import DatasetWriter, prepare
from .synth import SynthParams, make_catalog, synth

__all__ = [
    "DataError",
    "DatasetWriter",
    "InteractionData",
    "Manifest",
    "SynthParams",
    "make_catalog",
    "prepare",
    "read_irb",
    "read_lightgcn",
    "read_pairs",
    "synth",
]
