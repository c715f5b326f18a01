"""Multimodal unlearnable examples (MEM) for CLIP-style image-caption datasets."""

__version__ = "0.1.0"


class UnlearnableError(Exception):
    """A user-facing error: its message is one line naming the key, file or row at fault."""


class ConfigError(UnlearnableError):
    pass


class DataError(UnlearnableError):
    pass
