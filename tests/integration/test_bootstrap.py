"""bootstrap.py, the one place a venv is made (./deploy.sh, make venv, CI): once, again when
requirements.txt changes or a first install was stopped, with uv, else pip, saying so; and
what a newcomer reads on a first `./deploy.sh --local`, from the venv to the banner.

Real installs, offline and fast: the project's requirements.txt is replaced by one local
wheel (made here), whose .pth file puts the test venv's packages on the new venv's path, so
that `./deploy.sh --local --help` can run in the venv that was just made.
"""

import base64
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest

from local.emulator import free_port
from tests.conftest import FAKE_CREDENTIALS, ROOT

PROBE = "route_counter_probe"


def record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def probe_wheel(directory: Path) -> Path:
    """A wheel of one module, and a .pth with this test venv's packages."""
    info = f"{PROBE}-1.0.dist-info"
    files = {
        f"{PROBE}.py": b"INSTALLED = True\n",
        f"{PROBE}.pth": f"{sysconfig.get_paths()['purelib']}\n".encode(),
        f"{info}/METADATA": b"Metadata-Version: 2.1\nName: route-counter-probe\nVersion: 1.0\n",
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n",
    }
    record = [record_line(name, data) for name, data in files.items()] + [f"{info}/RECORD,,"]
    wheel = directory / f"{PROBE}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
        archive.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
    return wheel


def uv_binary() -> str | None:
    """The uv bootstrap.py put beside the venv's python (make venv), or one on PATH."""
    beside = Path(sys.executable).parent / "uv"
    return str(beside) if beside.exists() else shutil.which("uv")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """deploy.sh and bootstrap.py in a copy of the project whose requirements.txt is the
    probe wheel, found by name in a directory as a pip.conf's find-links would."""
    project = tmp_path / "project"
    project.mkdir()
    for name in ("deploy.sh", "bootstrap.py"):
        shutil.copy2(ROOT / name, project / name)
    for name in ("local", "deployer", "handler", "templates", "generate.py"):
        (project / name).symlink_to(ROOT / name)
    (project / "requirements.txt").write_text("route-counter-probe==1.0\n")
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    probe_wheel(wheels)
    return project


def environment(project: Path, **extra: str | None) -> dict[str, str]:
    """The user's environment, pip and uv finding the probe wheel; `extra` on top (None:
    unset)."""
    wheels = str(project.parent / "wheels")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_"))}
    env.pop("ROUTE_COUNTER_INSTALLER", None)
    env["PATH"] = f"{project.parent / 'bin'}{os.pathsep}{env['PATH']}"
    env |= {
        "PIP_FIND_LINKS": wheels,
        "PIP_NO_INDEX": "1",
        "PIP_CONFIG_FILE": os.devnull,  # this machine's pip.conf is not a newcomer's
        "UV_FIND_LINKS": wheels,
        "UV_NO_INDEX": "1",
        "UV_CACHE_DIR": str(project.parent / "uv-cache"),
    }
    env |= {key: value for key, value in extra.items() if value is not None}
    return {key: value for key, value in env.items() if extra.get(key, "") is not None}


def deploy_local_help(project: Path, **extra: str | None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(project / "deploy.sh"), "--local", "--help"],
        cwd=project,
        env=environment(project, **extra),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def installed(project: Path) -> bool:
    python = project / ".venv" / "bin" / "python"
    probe = subprocess.run([str(python), "-c", f"import {PROBE}"], capture_output=True)
    return probe.returncode == 0


def said(result: subprocess.CompletedProcess) -> list[str]:
    """What bootstrap.py said (on stderr: deploy.sh's stdout is the command's own)."""
    return [line for line in result.stderr.splitlines() if line.startswith("==> ")]


def test_a_fresh_clone_gets_its_venv_with_pip_saying_what_happens(project):
    result = deploy_local_help(project, ROUTE_COUNTER_INSTALLER="pip")

    assert result.returncode == 0, result.stderr
    lines = said(result)
    assert lines[:2] == [
        "==> First run: making .venv/, the Python packages this project runs on",
        "==> Installing 1 Python package from requirements.txt into .venv/",
    ]
    assert lines[2].startswith("==> Installed 1 Python package in ")
    assert lines[2].endswith(" s (pip)")
    assert "rm -rf" not in result.stdout + result.stderr
    assert "usage: ./deploy.sh --local" in result.stdout
    assert installed(project) and (project / ".venv" / ".installed").exists()


def put_uv_on_path(project: Path) -> bool:
    uv = uv_binary()
    if uv is not None:
        (project.parent / "bin").mkdir(exist_ok=True)
        (project.parent / "bin" / "uv").symlink_to(uv)
    return uv is not None


def test_uv_installs_the_same_pins_when_it_can(project):
    if not put_uv_on_path(project):
        pytest.skip("uv is not installed (make venv installs it beside the venv's python)")

    result = deploy_local_help(project)

    assert result.returncode == 0, result.stderr
    assert said(result)[-1].endswith(" s (uv)")
    assert installed(project)


def test_when_uv_fails_pip_installs_them_and_it_says_so(project):
    """uv does not read pip's configuration: an index only pip knows of (here, the wheels'
    directory; for many, a company mirror in pip.conf) is pip's alone, and uv, offline,
    finds nothing. The install goes on with pip. (Without uv at hand, pip cannot fetch it
    either here, which is the same story.)"""
    put_uv_on_path(project)

    result = deploy_local_help(project, UV_NO_INDEX=None, UV_FIND_LINKS=None, UV_OFFLINE="1")
    log = (project / ".venv" / "install.log").read_text()

    assert result.returncode == 0, result.stderr
    lines = said(result)
    assert lines[2].startswith("==> uv could not install them (")
    assert lines[2].endswith("): installing with pip instead")
    assert lines[3].endswith(" s (pip)")
    assert installed(project)
    if uv_binary() is not None:  # uv ran, offline, and found nothing (pip did)
        said_by_uv = log.split("uv pip install", 1)[1].split("\n$ ", 1)[0]
        assert "route-counter-probe" in said_by_uv, log


def test_an_install_that_fails_says_where_its_output_is(project):
    (project / "requirements.txt").write_text("route-counter-probe==9.9\n")

    result = deploy_local_help(project, ROUTE_COUNTER_INSTALLER="pip")

    assert result.returncode == 1
    log = project / ".venv" / "install.log"
    assert f"error: installing with pip failed (exit status 1); its output is in {log}:" in (
        result.stderr
    )
    assert "route-counter-probe==9.9" in result.stderr  # pip's own words, from the log's end
    assert not (project / ".venv" / ".installed").exists()  # made again next time
    assert "Traceback" not in result.stderr


def test_a_complete_venv_is_used_as_it_is(project):
    assert deploy_local_help(project, ROUTE_COUNTER_INSTALLER="pip").returncode == 0

    again = deploy_local_help(project)

    assert again.returncode == 0, again.stderr
    assert said(again) == []


def test_a_half_built_venv_is_made_again(project):
    """An install stopped by Ctrl-C leaves a venv without its stamp."""
    assert deploy_local_help(project, ROUTE_COUNTER_INSTALLER="pip").returncode == 0
    (project / ".venv" / ".installed").unlink()

    again = deploy_local_help(project, ROUTE_COUNTER_INSTALLER="pip")

    assert again.returncode == 0, again.stderr
    assert said(again)[0] == (
        "==> .venv/ is incomplete or older than requirements.txt: making it again"
    )
    assert installed(project)


def test_changed_requirements_make_the_venv_again(project):
    assert deploy_local_help(project, ROUTE_COUNTER_INSTALLER="pip").returncode == 0
    stamp = project / ".venv" / ".installed"
    old = time.time() - 60
    os.utime(stamp, (old, old))

    again = deploy_local_help(project, ROUTE_COUNTER_INSTALLER="pip")

    assert said(again)[0].startswith("==> .venv/ is incomplete or older than requirements.txt")


def first_run(project: Path, state: Path, *args: str) -> tuple[list[str], list[str]]:
    """`./deploy.sh --local` in the fresh copy until it serves, one hit, then Ctrl-C: its
    stdout and stderr lines (bootstrap.py speaks on stderr, the stack on stdout)."""
    port = free_port()
    out, err = state.parent / f"out-{port}", state.parent / f"err-{port}"
    env = environment(project, ROUTE_COUNTER_INSTALLER="pip") | FAKE_CREDENTIALS
    command = [str(project / "deploy.sh"), "--local", "--port", str(port)]
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(
            [*command, "--state-dir", str(state), *args],
            cwd=project,
            env=env,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 240
        while "Ctrl-C to stop." not in out.read_text():
            assert process.poll() is None, out.read_text() + err.read_text()
            assert time.monotonic() < deadline, out.read_text() + err.read_text()
            time.sleep(0.1)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/hello", timeout=30) as answer:
            assert answer.status == 200
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0, err.read_text()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return out.read_text().splitlines(), err.read_text().splitlines()


def test_a_first_run_says_what_it_installs_then_what_runs_with_which_parameters(project, tmp_path):
    state = tmp_path / "state"
    out, err = first_run(project, state, "--param", "StageName=dev")

    assert err[:2] == [
        "==> First run: making .venv/, the Python packages this project runs on",
        "==> Installing 1 Python package from requirements.txt into .venv/",
    ]
    assert err[2].startswith("==> Installed 1 Python package in ")
    assert not any("rm -rf" in line for line in out + err)
    banner = out[: out.index("Ctrl-C to stop.")]
    assert banner[0].startswith("Route Counter is running locally, ready in ")
    assert (
        f"  counts:    saved in {state / 'route-counter'} (0 routes restored; --fresh starts empty)"
        in banner
    )
    params = " ".join(" ".join(line.split()) for line in banner if "=" in line)
    assert params.startswith("params: given: StageName=dev the others at their defaults: ")
    assert " Analytics=on " in params and " RateLimit=0 " in params and " AlarmEmail='' " in params

    again, err = first_run(project, state)

    assert [line for line in err if line.startswith("==>")] == []  # the venv is made once
    assert (
        f"  counts:    saved in {state / 'route-counter'} (1 route restored; --fresh starts empty)"
        in again
    )
    assert any(line.startswith("  params:    defaults: ") for line in again)


def test_make_venv_runs_bootstrap_and_nothing_else(tmp_path):
    """make's own rule (make -n prints what it would run): one line, no bare rm -rf."""
    for name in ("Makefile", "requirements.txt", "bootstrap.py"):
        (tmp_path / name).write_bytes((ROOT / name).read_bytes())
    (tmp_path / ".venv" / "bin").mkdir(parents=True)

    # Run as from a shell, also when the suite itself runs under make (make test).
    # PYTHON too: the Makefile's default interpreter is the one asserted.
    unset = ("MAKEFLAGS", "MAKELEVEL", "MFLAGS", "PYTHON")
    env = {k: v for k, v in os.environ.items() if k not in unset}
    plan = subprocess.run(
        ["make", "--no-print-directory", "-n", "venv"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()

    assert plan == ["python3 bootstrap.py .venv requirements.txt"]
