"""The one exception tree of ragkit: the CLI turns any of these into a one-line error."""

from __future__ import annotations


class RagkitError(Exception):
    """Base class of every error ragkit raises on purpose.

    ``param`` names the parameter at fault, when there is one: library messages speak of
    parameters (``recall must be in (0, 1]``), and a front end maps them to its own words
    (the CLI to ``--recall``, an HTTP API to its query field).
    """

    def __init__(self, message: str = "", *, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class IndexNotFoundError(RagkitError):
    """The index folder does not exist or holds no ragkit index."""


class IndexFormatError(RagkitError):
    """The index folder is foreign, damaged or written by an incompatible format version."""


class ModelMismatchError(RagkitError):
    """The index was built with another embedding model or dimension than the one asked for."""

    @classmethod
    def dimensions(cls, model: str, got: int, index: object, expected: int) -> ModelMismatchError:
        return cls(f"model {model!r} now gives {got}-dimensional vectors; "
                   f"index {index} holds {expected}-dimensional ones: rebuild it")


class ModelLoadError(RagkitError):
    """The embedding model cannot be found or loaded."""


class EmptyCorpusError(RagkitError):
    """Nothing to index: no readable document with text."""


class InvalidArgumentError(RagkitError):
    """A bad query, k, option value or data set."""


class IndexLockedError(RagkitError):
    """Another process is writing the index and the caller chose not to wait."""


class StorageError(RagkitError):
    """The index folder could not be written: a full disk or another I/O error (nothing was changed)."""



class OnnxEncoderError(IndexFormatError):
    """An ONNX encoder folder is missing, damaged, foreign or from an incompatible format version."""


class OnnxExportUnsupported(RagkitError, NotImplementedError):
    """The model cannot be exported faithfully (architecture, dtype, pooling): keep sentence-transformers."""
