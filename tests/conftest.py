"""Fixtures shared by the test modules."""

from __future__ import annotations

import functools

import pytest

import isv_sandbox
from tests.helpers import FAST_SANDBOX


@pytest.fixture
def sandboxes():
    """``start(vendor, **settings)``: a sandbox for this test, stopped at its end.

    Each vendor's ``FAST_SANDBOX`` settings apply unless the test overrides them.
    """
    started = []

    def start(vendor: str, **settings):
        server = isv_sandbox.start(vendor, **{**FAST_SANDBOX.get(vendor, {}), **settings})
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def heroku(sandboxes):
    return functools.partial(sandboxes, "heroku")


@pytest.fixture
def isvapp(sandboxes):
    return functools.partial(sandboxes, "isvapp")


@pytest.fixture
def marketplace(sandboxes):
    return functools.partial(sandboxes, "marketplace")
