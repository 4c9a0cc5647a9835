"""Fixtures shared by every test package.

``emulators``: the sandbox emulators (Stripe, Salesforce, DocuSign, product backend, NetSuite) on
ephemeral ports with a temporary state directory, started once per test session.
``reset_emulators``: the same emulators, put back to their seed state before the test.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

_EXIT_STATUS = pytest.StashKey[int]()

if TYPE_CHECKING:
    from sandbox.runner import RunningEmulators


@pytest.fixture(scope="session")
def emulators(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEmulators]:
    # Imported here so that a broken emulator fails only the tests that use the emulators,
    # not the collection of every test in the project.
    from sandbox.runner import EmulatorPorts, start_emulators

    running = start_emulators(tmp_path_factory.mktemp("emulators"), ports=EmulatorPorts())
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def reset_emulators(emulators: RunningEmulators) -> RunningEmulators:
    emulators.reset()
    return emulators


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    session.config.stash[_EXIT_STATUS] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """Leave without interpreter finalization once pytest has reported everything.

    The Temporal client's Rust runtime keeps threads that can race CPython's finalization and abort
    a process that has already finished its work (see starters/cli.py ``main``); here that would
    turn a green run into exit code 134.
    """
    status = config.stash.get(_EXIT_STATUS, None)
    if status is not None:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
