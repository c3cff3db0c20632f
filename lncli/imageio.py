"""Compatibility shim: image files live in :mod:`lncli.images`, the corrupt job in :mod:`lncli.jobs.corrupt`."""

from lncli.config.corrupt import CorruptConfig, OutputFormat
from lncli.images import IMAGE_SUFFIXES, find_images, read_image, write_image
from lncli.jobs.corrupt import run_corrupt, write_preview

__all__ = [
    "IMAGE_SUFFIXES",
    "CorruptConfig",
    "OutputFormat",
    "find_images",
    "read_image",
    "run_corrupt",
    "write_image",
    "write_preview",
]
