"""Client tests use the shared real-service fixture of tests/conftest.py (`fgrm_service`: one
`fgrm serve` subprocess per session, shipped models, free ports). FGRM_TEST_FEEDBACK_TYPES
points it at other checkpoints, e.g. tiny random ones, when only the wire is under test."""

import pytest


@pytest.fixture(scope="session")
def real_service(fgrm_service):
    """(http_url, grpc_target) of the running service."""
    return fgrm_service.base_url, fgrm_service.grpc_target
