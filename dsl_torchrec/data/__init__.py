"""Datasets: benchmark and raw-log converters, splits, synthetic generator, canonical directory +
manifest, reader, per-rank loaders.

A dataset directory holds ``manifest.json`` and one parquet file per split (``train``,
optional ``valid``, ``test``; ``all`` for an unsplit log) with int64 columns ``user_id`` and
``item_id`` (and ``timestamp`` when known), deduplicated and sorted by user, then item; plus
``users.parquet`` / ``items.parquet`` vocabularies (original id -> dense id) for raw logs.
"""

from .dataset import InteractionData
from .errors import DataError
from .formats import read_irb, read_lightgcn, read_pairs
from .loader import Batch, EpochBatches, ParquetBatches, make_batches
from .logs import prepare_log, read_log, read_movielens
from .manifest import Manifest
from .prepare import DatasetWriter, prepare
from .split import split_dataset
from .synth import SynthParams, make_catalog, synth

__all__ = [
    "Batch",
    "DataError",
    "EpochBatches",
    "ParquetBatches",
    "make_batches",
    "prepare_log",
    "read_log",
    "read_movielens",
    "split_dataset",
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
