from __future__ import annotations

import logging

import pytest

from tests.central_link.harness import Records, make_pki


@pytest.fixture
def pki(tmp_path):
    return make_pki(tmp_path / "certs")


@pytest.fixture
def hub_log():
    handler = Records()
    logger = logging.getLogger("central_link.hq")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)
