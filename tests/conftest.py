"""Fixtures shared by the whole suite: one SeaweedFS (S3) server per test session."""

from tests.seaweed import seaweed

__all__ = ["seaweed"]
