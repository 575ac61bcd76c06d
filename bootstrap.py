"""Make a venv from a pinned requirements file, once: `python3 bootstrap.py [VENV REQUIREMENTS]`.

The one place a venv of this project is made (Makefile's `make venv` and its checkov venv,
./deploy.sh, and so CI). Standard library only: it runs on the system's python3.

- Nothing to do when VENV/.installed is newer than REQUIREMENTS: the stamp is written after
  the last package, so a half-built venv (an install stopped by Ctrl-C) has none.
- Otherwise VENV is made anew and the pinned file installed with uv, which installs the same
  pins as pip some ten times faster (docs/local-stack.md, "The first run"); pip when uv
  cannot be had or fails (uv does not read pip's configuration: a pip.conf mirror is
  reached by pip only). uv is the one on PATH, else the project venv's, else uv==UV_VERSION
  installed by pip into the new venv. ROUTE_COUNTER_INSTALLER=pip (or uv) uses that one only.
- What it says is for a newcomer: a line before, a progress line while the packages
  install (updated in place on a terminal), a line after; the installers' own output goes to
  VENV/install.log, and its end is shown only when the install fails.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
UV_VERSION = "0.13.9"  # also the one `make lock` resolves the requirements files with
STAMP = ".installed"
LOG = "install.log"
PROGRESS_EVERY = 10.0  # seconds between progress lines when the output is not a terminal
PINNED = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^]]*\])?==", re.MULTILINE)


class InstallFailed(Exception):
    """An installer that ran and failed; the message says which and where its output is."""


def say(line: str) -> None:
    print(f"==> {line}", flush=True)


def up_to_date(venv: Path, requirements: Path) -> bool:
    stamp = venv / STAMP
    return stamp.exists() and stamp.stat().st_mtime >= requirements.stat().st_mtime


def pinned_packages(requirements: Path) -> int:
    return len(PINNED.findall(requirements.read_text()))


def run_logged(
    command: list[str],
    log: Path,
    what: str,
    total: int,
    counted: str,
    env: dict[str, str] | None = None,
) -> None:
    """Run command, its output appended to log, with a progress line until it ends: on a
    terminal one line rewritten every second, else one line every PROGRESS_EVERY seconds.
    counted: the log lines starting with it are packages done (pip's "Collecting")."""
    with log.open("a") as sink:
        sink.write(f"$ {' '.join(command)}\n")
        sink.flush()
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=env)
    started = time.monotonic()
    tty = sys.stdout.isatty()
    done = threading.Event()

    def progress() -> None:
        every = 1.0 if tty else PROGRESS_EVERY
        while not done.wait(every):
            seen = sum(1 for line in log.read_text().splitlines() if line.startswith(counted))
            share = f"{min(seen, total)} of {total} packages, " if counted and seen else ""
            line = f"    {what}: {share}{time.monotonic() - started:.0f} s"
            print(f"\r{line}\033[K" if tty else line, end="" if tty else "\n", flush=True)

    thread = threading.Thread(target=progress, daemon=True)
    thread.start()
    try:
        status = process.wait()
    except KeyboardInterrupt:
        process.terminate()
        raise
    finally:
        done.set()
        thread.join()
        if tty:
            print("\r\033[K", end="", flush=True)
    if status != 0:
        raise InstallFailed(f"{what} failed (exit status {status})")


def find_uv(venv: Path, log: Path) -> str:
    """uv on PATH, else the project venv's, else uv==UV_VERSION installed into venv by pip."""
    for candidate in (shutil.which("uv"), ROOT / ".venv" / "bin" / "uv"):
        if candidate and os.access(candidate, os.X_OK):
            return str(candidate)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
    run_logged([*pip, "install", f"uv=={UV_VERSION}"], log, "getting uv", 0, "")
    return str(venv / "bin" / "uv")


def install_with_uv(venv: Path, requirements: Path, log: Path, total: int) -> None:
    uv = find_uv(venv, log)
    python = str(venv / "bin" / "python")
    command = [uv, "pip", "install", "--python", python, "-r", str(requirements)]
    if os.environ.get("PYTHONDONTWRITEBYTECODE"):
        # Python then never writes what it compiles on import: every start would compile
        # again (15 s instead of 2): compile it all now, as pip does. Without it, the first
        # start compiles what it imports, once, and at a fraction of the cost of it all.
        command.append("--compile-bytecode")
    # The system's certificates, as pip, curl and git trust them: uv's own list lacks a
    # company's TLS proxy ("invalid peer certificate: UnknownIssuer"). Older uv: NATIVE_TLS.
    trust = {"UV_SYSTEM_CERTS": "1", "UV_NATIVE_TLS": "1"}
    run_logged(command, log, "installing with uv", total, "", trust | dict(os.environ))


def install_with_pip(venv: Path, requirements: Path, log: Path, total: int) -> None:
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
    command = [*pip, "install", "-r", str(requirements)]
    run_logged(command, log, "installing with pip", total, "Collecting")


def make_venv(venv: Path, requirements: Path) -> None:
    """VENV made anew with every package of REQUIREMENTS, then its stamp."""
    installer = os.environ.get("ROUTE_COUNTER_INSTALLER", "")
    if installer not in ("", "uv", "pip"):
        raise InstallFailed(f"ROUTE_COUNTER_INSTALLER={installer}: use uv or pip")
    total = pinned_packages(requirements)
    started = time.monotonic()
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    log = venv / LOG
    log.write_text("")
    packages = f"{total} Python package{'' if total == 1 else 's'}"
    say(f"Installing {packages} from {requirements.name} into {venv.name}/")
    used = "pip"
    if installer != "pip":
        try:
            install_with_uv(venv, requirements, log, total)
            used = "uv"
        except (InstallFailed, OSError) as failure:
            if installer == "uv":
                raise
            say(f"uv could not install them ({failure}): installing with pip instead")
    if used == "pip":
        install_with_pip(venv, requirements, log, total)
    (venv / STAMP).touch()
    say(f"Installed {packages} in {time.monotonic() - started:.1f} s ({used})")


def main(argv: list[str]) -> int:
    venv = Path(argv[0]) if argv else ROOT / ".venv"
    requirements = Path(argv[1]) if len(argv) > 1 else ROOT / "requirements.txt"
    if up_to_date(venv, requirements):
        return 0
    if venv.exists():
        say(f"{venv.name}/ is incomplete or older than {requirements.name}: making it again")
    else:
        say(f"First run: making {venv.name}/, the Python packages this project runs on")
    try:
        make_venv(venv, requirements)
    except InstallFailed as failure:
        print(f"error: {failure}; its output is in {venv / LOG}:", file=sys.stderr)
        log = (venv / LOG).read_text() if (venv / LOG).exists() else ""
        print("\n".join(log.splitlines()[-15:]), file=sys.stderr)
        return 1
    except subprocess.CalledProcessError:
        print(
            f"error: {sys.executable} -m venv failed (see above): on Debian or Ubuntu, "
            "install python3-venv (apt-get install python3-venv)",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        print(f"\nStopped: {venv.name}/ is left incomplete and is made again next time.")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
