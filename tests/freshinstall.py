"""This checkout built as a wheel and installed (not editable) in a new virtual environment, once per
test session: the packaging test and the tutorial test both need one, and each costs a minute."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def clean_env() -> dict[str, str]:
    """The environment without anything that would point a child at this checkout or its venv."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP", "PYTHONSAFEPATH")}
    venv_bin = str(Path(sys.prefix) / "bin")
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != venv_bin)
    return env


def build_wheel(out: Path) -> Path:
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(ROOT)],
                          capture_output=True, text=True, timeout=120, cwd=out)
    assert done.returncode == 0, f"building the wheel failed:\n{done.stdout}\n{done.stderr}"
    wheels = list(out.glob("mqtt_connector-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def new_venv(base: Path, *requirements: str) -> Path:
    """A virtual environment in ``base/venv`` with ``requirements`` installed: its bin folder."""
    env = clean_env()
    venv = base / "venv"
    done = subprocess.run([sys.executable, "-m", "venv", str(venv)], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    bin_dir = venv / "bin"
    pip_install(bin_dir, *requirements)
    return bin_dir


def pip_install(bin_dir: Path, *requirements: str) -> None:
    # dependencies come from the configured package index: if it cannot be reached, this fails
    done = subprocess.run([str(bin_dir / "python"), "-m", "pip", "install", "--quiet", *requirements],
                          capture_output=True, text=True, timeout=240, env=clean_env(), cwd=bin_dir.parent)
    assert done.returncode == 0, f"pip install {' '.join(requirements)} failed:\n{done.stdout}\n{done.stderr}"
