"""Integration fixtures: a real Docker Engine and the local base image.

Where no engine answers, these tests skip with the reason, unless BASELINER_REQUIRE_DOCKER=1
(set by .ci/run): then a missing engine or base image fails the run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from baseliner.errors import DockerUnavailable
from baseliner.images import BASE_IMAGE, TEST_LABEL, connect, image_exists

REQUIRED = os.environ.get("BASELINER_REQUIRE_DOCKER") == "1"


def _unavailable(reason: str) -> None:
    if REQUIRED:
        pytest.fail(f"{reason} (BASELINER_REQUIRE_DOCKER=1: Docker tests are required here)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def docker_client() -> Iterator[Any]:
    try:
        client = connect()
    except DockerUnavailable as exc:
        _unavailable(f"no Docker Engine: {exc.details[0] if exc.details else exc.message}")
    if not image_exists(client, BASE_IMAGE):
        _unavailable(f"base image {BASE_IMAGE} missing: run `invoke base-image`")
    yield client
    for container in client.containers.list(all=True, filters={"label": TEST_LABEL}):
        container.remove(force=True)
