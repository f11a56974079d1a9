"""Errors about a dataset's files. Each message is one line naming the path and the fix."""

from __future__ import annotations


class DatasetError(Exception):
    """Base class of the errors below, so callers can catch any dataset problem at once."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """The root or a required file is missing (and cannot or may not be downloaded)."""


class IncompleteDatasetError(DatasetError, FileNotFoundError):
    """The layout is there but class folders or listed images are missing."""


class ChecksumMismatchError(DatasetError, ValueError):
    """A file differs from the official one while checksums are verified."""


class CorruptImageError(DatasetError, ValueError):
    """An image file cannot be read."""


class LabelOutOfRangeError(DatasetError, ValueError):
    """A label has no class name."""


class CorruptDataFileError(DatasetError, ValueError):
    """A data file (pickle, idx, ``.mat``, ``.bin``) cannot be parsed, holds the wrong arrays, or
    holds a different number of images than of labels."""


class UnsafePickleError(CorruptDataFileError):
    """A pickle asks for a global that plain data never needs (it could run code); refused before
    anything was called."""
