"""Exception types. Every error a user can cause derives from :class:`GencodecError`,
which the CLI prints as one line (exit code 2)."""


class GencodecError(Exception):
    """Base class of the errors gencodec reports to users."""


class BitstreamError(GencodecError):
    """A stream that cannot be decoded: wrong magic, unknown version, truncated,
    corrupt (CRC mismatch) or made for another model."""


class InputError(GencodecError, ValueError):
    """Bad input: unreadable, corrupt or truncated image, wrong mode, too large, bad option."""


class OutputExistsError(GencodecError):
    """The output file exists and ``force`` was not given."""
