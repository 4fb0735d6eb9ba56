"""Shared by the tune tests: one local Ray per test module."""
import pytest
import ray


@pytest.fixture(scope="module")
def local_ray():
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, object_store_memory=128 << 20,
                 log_to_driver=False)
    yield
    if started:
        ray.shutdown()
