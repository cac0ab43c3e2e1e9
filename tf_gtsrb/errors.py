"""Error types raised by tf_gtsrb. Every message names the file and the problem."""


class GtsrbError(Exception):
  """Base class of all errors this project raises on bad input."""


class ConfigError(GtsrbError, ValueError):
  """A flag or argument has a value that cannot work."""


class DataError(GtsrbError):
  """An annotation file or image is missing, malformed or inconsistent."""


class ArchiveError(DataError):
  """An archive is corrupt, truncated or hostile (zip-slip, bomb, symlink...)."""


class ChecksumError(DataError):
  """A downloaded or supplied file does not match its published checksum."""


class DownloadError(DataError):
  """A download failed or could not be started (network, credentials)."""


class ModelError(GtsrbError):
  """A model file or checkpoint is unreadable or does not fit what is asked."""
