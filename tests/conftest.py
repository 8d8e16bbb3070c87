"""Fixtures shared by the whole suite: one SeaweedFS (S3) server per test session.

Hypothesis runs without its per-example deadline and slow-data health check: on a busy
two-core machine an example can take ten times its usual time, and a property test must
fail only on a wrong result, never by chance on a slow one.
"""

from hypothesis import HealthCheck, settings

from tests.seaweed import seaweed

settings.register_profile(
    "spoolup",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("spoolup")

__all__ = ["seaweed"]
