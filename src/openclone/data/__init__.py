"""Datasets: file formats, Alpaca's near-duplicate filter (exact and fast), held-out splits."""

from openclone.data.dedupe import NearDuplicateFilter, dedupe, lcs_length, rouge_l, tokenize
from openclone.data.formats import (
    DatasetFormatError,
    InstructionFile,
    instruction_of,
    read_instructions,
)
from openclone.data.split import split_unit

__all__ = [
    "DatasetFormatError",
    "InstructionFile",
    "NearDuplicateFilter",
    "dedupe",
    "instruction_of",
    "lcs_length",
    "read_instructions",
    "rouge_l",
    "split_unit",
    "tokenize",
]
