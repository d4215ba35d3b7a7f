"""Exceptions raised by ussnb. All derive from :class:`UssnbError` (itself a ``ValueError`` where the
problem is bad input) so callers can catch one type and users read one clear message."""


class UssnbError(Exception):
    """Base class of every error ussnb raises on purpose."""


class AudioError(UssnbError, ValueError):
    """An audio file or array cannot be used (missing, unreadable, empty, NaN/inf, too short, ...)."""


class OntologyError(UssnbError, ValueError):
    """AudioSet metadata is missing or malformed, or a label cannot be found."""


class CheckpointError(UssnbError, ValueError):
    """A checkpoint does not match the model it is loaded into (keys, shapes, config)."""


class DataError(UssnbError, ValueError):
    """A dataset is missing, incomplete or cannot be prepared (e.g. a system package is absent)."""


class PipelineError(UssnbError, RuntimeError):
    """A pipeline run cannot start or a stage failed."""


class ConfigError(UssnbError, ValueError):
    """A setting or argument is out of range or of the wrong type (a CLI option, a preset value, an API argument)."""


class SeparationError(UssnbError, RuntimeError):
    """A separator could not produce a usable estimate (NaN/inf output, mismatched mixtures and conditions)."""


class QueryError(CheckpointError):
    """A query — class name, example recording, condition vector or file — does not fit the separator it is
    for (wrong kind or size of condition, no class averages to query by name). A :class:`CheckpointError`,
    since the mismatch is between the query and the checkpoint."""


class DownloadError(UssnbError, RuntimeError):
    """A download failed or produced an invalid file."""


class WeightsNotFoundError(UssnbError, FileNotFoundError):
    """A pretrained weight file is not on disk and could not be downloaded."""
