"""A throwaway PostgreSQL server for the ledger tests: ``initdb`` and ``pg_ctl`` from the system's
PostgreSQL packages (``.ci/run`` installs them), a free port, fsync off, trust authentication on
127.0.0.1 only. PostgreSQL refuses to run as root, so under root (CI) it runs as ``nobody``."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.stack_support import free_port


def postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    if found:
        return Path(found[0]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


PG_BIN = postgres_bin()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    if PG_BIN is None:
        pytest.skip("PostgreSQL is not installed (.ci/run installs it: apt-get install postgresql)")
    # Not under pytest's temporary directory: that one is private to root, and the server's
    # user must reach its data directory.
    root = Path(tempfile.mkdtemp(prefix="qtc-postgres-"))
    data, log = root / "data", root / "server.log"
    user: str | None = None
    if os.geteuid() == 0:
        user = "nobody"
        nobody = pwd.getpwnam(user)
        os.chown(root, nobody.pw_uid, nobody.pw_gid)
    port = free_port()

    def run(*argv: str) -> None:
        done = subprocess.run(
            [str(PG_BIN / argv[0]), *argv[1:]], user=user, capture_output=True, text=True
        )
        assert done.returncode == 0, f"{argv[0]} failed:\n{done.stdout}\n{done.stderr}"

    run("initdb", "-D", str(data), "-U", "qtc", "--auth=trust", "-E", "UTF8", "--no-sync")
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    run("pg_ctl", "-D", str(data), "-o", options, "-l", str(log), "-w", "start")
    try:
        yield f"postgresql+psycopg://qtc@127.0.0.1:{port}/postgres"
    finally:
        run("pg_ctl", "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)
