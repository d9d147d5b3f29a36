"""Fixtures of the faults suite."""

from tests.faults.image import big_image

__all__ = ["big_image"]
