"""The entry points build .venv when it is missing, half-built or out of date, and only then.

A first install that was interrupted (Ctrl-C during pip) leaves a .venv with a python but
without every package; make writes .venv/.installed after the last one, so both entry
points go by that stamp, not by the python's presence.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT

FAKE_MAKE = """#!/usr/bin/env bash
# Stands in for make: records the call, then does what 'make venv' leaves behind.
echo "$*" >> "$MAKE_CALLS"
mkdir -p .venv/bin
ln -sf "$REAL_PYTHON" .venv/bin/python
touch .venv/.installed
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """deploy.sh in a copy of the project, with a `make` that records its calls."""
    project = tmp_path / "project"
    project.mkdir()
    for name in ("deploy.sh", "requirements.txt"):
        (project / name).write_bytes((ROOT / name).read_bytes())
    (project / "deploy.sh").chmod(0o755)
    for package in ("local", "deployer"):  # the local stack reads templates with deployer's
        (project / package).symlink_to(ROOT / package)
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "make").write_text(FAKE_MAKE)
    (tools / "make").chmod(0o755)
    return project


def run_local_help(project: Path) -> tuple[subprocess.CompletedProcess, list[str]]:
    calls = project.parent / "make-calls"
    calls.unlink(missing_ok=True)
    env = {
        "PATH": f"{project.parent / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(project.parent),
        "MAKE_CALLS": str(calls),
        "REAL_PYTHON": sys.executable,
    }
    result = subprocess.run(
        [str(project / "deploy.sh"), "--local", "--help"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    made = calls.read_text().splitlines() if calls.exists() else []
    return result, made


def half_built_venv(project: Path) -> None:
    """What an interrupted `make venv` leaves: a python, no stamp."""
    (project / ".venv" / "bin").mkdir(parents=True)
    (project / ".venv" / "bin" / "python").symlink_to(sys.executable)


def test_no_venv_is_created_then_used(project):
    result, made = run_local_help(project)

    assert result.returncode == 0, result.stderr
    assert made == ["-C " + str(project) + " --no-print-directory venv"]
    assert "No .venv yet: creating it (make venv)" in result.stdout
    assert "usage: python -m local" in result.stdout


def test_a_half_built_venv_is_rebuilt(project):
    half_built_venv(project)

    result, made = run_local_help(project)

    assert result.returncode == 0, result.stderr
    assert len(made) == 1 and made[0].endswith(" venv")
    assert ".venv is incomplete or out of date: rebuilding it (make venv)" in result.stdout


def test_a_complete_venv_is_used_as_it_is(project):
    half_built_venv(project)
    (project / ".venv" / ".installed").touch()

    result, made = run_local_help(project)

    assert result.returncode == 0, result.stderr
    assert made == []
    assert "make venv" not in result.stdout


def test_changed_requirements_rebuild_the_venv(project):
    half_built_venv(project)
    stamp = project / ".venv" / ".installed"
    stamp.touch()
    old = time.time() - 60
    os.utime(stamp, (old, old))

    _, made = run_local_help(project)

    assert len(made) == 1 and made[0].endswith(" venv")


def test_make_rebuilds_a_half_built_venv_from_scratch(tmp_path):
    """make's own rule (make -n prints what it would run): remove, create, install, stamp."""
    for name in ("Makefile", "requirements.txt"):
        (tmp_path / name).write_bytes((ROOT / name).read_bytes())
    (tmp_path / ".venv" / "bin").mkdir(parents=True)

    # Run as from a shell, also when the suite itself runs under make (make test).
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    plan = subprocess.run(
        ["make", "--no-print-directory", "-n", "venv"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()

    assert plan[0] == "rm -rf .venv"
    assert plan[-1] == "touch .venv/.installed"
    assert any("pip install" in line and "-r requirements.txt" in line for line in plan)
