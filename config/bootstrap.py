"""Create the project's virtual environment and re-run the command inside it.

Imports nothing outside the standard library: it runs under a bare Python 3.11.
Skipped when MIMAMORI_NO_VENV=1 (containers install into the system Python).
"""
import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
VENV = BASE_DIR / ".venv"
STAMP = VENV / ".mimamori-installed"


def _venv_python() -> Path:
    return VENV / "bin" / "python"


def _wanted_stamp() -> str:
    return hashlib.sha256((BASE_DIR / "pyproject.toml").read_bytes()).hexdigest()


def ensure_venv(argv: list[str]) -> None:
    """Return when running inside an up-to-date project venv; otherwise exec into one."""
    if os.environ.get("MIMAMORI_NO_VENV") == "1":
        return
    if sys.version_info[:2] != (3, 11):
        sys.exit(f"mimamori needs Python 3.11 (this is {sys.version.split()[0]}).")
    inside = Path(sys.prefix).resolve() == VENV.resolve()
    if not _venv_python().exists():
        print("Creating .venv ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    if not STAMP.exists() or STAMP.read_text() != _wanted_stamp():
        print("Installing mimamori and its dependencies into .venv ...", flush=True)
        pip = [str(_venv_python()), "-m", "pip", "install", "--disable-pip-version-check"]
        subprocess.run([*pip, "-q", "--upgrade", "pip"], check=True)
        subprocess.run([*pip, "-q", "-e", f"{BASE_DIR}[dev]"], check=True)
        STAMP.write_text(_wanted_stamp())
    if not inside:
        os.execv(str(_venv_python()), [str(_venv_python()), *argv])
