"""Data: reading example files, sampling, and (later) collection, validation and versioned datasets."""

from ratchet.data.files import LoadedExamples, labelled_examples, load_examples, read_records
from ratchet.data.sampling import balanced_demos, seeded_sample

__all__ = ["LoadedExamples", "balanced_demos", "labelled_examples", "load_examples", "read_records", "seeded_sample"]
