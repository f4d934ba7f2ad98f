"""A release a user can install: ``python -m build`` makes an sdist and a wheel; each installs
in a clean venv and runs the README's main command from a temp dir, with no repo on the path.

One venv installs the wheel, the other the sdist (which compiles the IPC C source on the way),
in parallel: the suite run is mostly waiting, so two cost about the time of one.
"""

from __future__ import annotations

import ast
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.timeout(280)

# What the package needs whatever layer is used (pyproject's `dependencies`), installed while
# the build runs so the two overlap.
BASE = ["pytest>=7.4", "hypothesis>=6.80", "asgiref>=3.6", "msgpack>=1.0"]
# A third-party import a layer makes only if it is there, never required by any extra.
OPTIONAL_IMPORTS = {"channels"}  # core/errors.py: ChannelFull subclasses Django's when installed
EXTRA_OF_LAYER = {"redis": "redis", "rabbitmq": "rabbitmq", "ipc": "ipc"}
DISTRIBUTION_OF_MODULE = {"posix_ipc": "posix-ipc"}


def readme_main_command() -> str:
    """The pytest command of the README's first code block (after its install step)."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## The two commands.*?```sh\n(.*?)\n```", text, re.S)
    assert block, "README.md lost its 'The two commands' section"
    command = block.group(1).strip().split("&&")[-1].strip()
    assert command.startswith("pytest "), command
    return command


def clean_env(venv: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PYTEST", "VIRTUAL_ENV"))}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(venv)
    return env


def source_copy(into: Path) -> Path:
    """The checkout as a user's clone has it: building in place would leave build/ and an
    egg-info in the repo, which pip then takes for an installed asgi-conformance."""
    return Path(shutil.copytree(ROOT, into, ignore=shutil.ignore_patterns(
        ".git", "*.so", "__pycache__", "*.egg-info", "build", "dist", ".*_cache", ".hypothesis", "bench")))


def start(args, cwd: Path, env=None) -> subprocess.Popen:
    env = env or {**clean_env(Path(sys.prefix)), "PIP_ROOT_USER_ACTION": "ignore"}
    return subprocess.Popen([str(a) for a in args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def finish(process: subprocess.Popen, what: str, limit: float = 240) -> str:
    out, _ = process.communicate(timeout=limit)
    assert process.returncode == 0, f"{what} failed ({process.returncode}):\n{out[-4000:]}"
    return out


def pip(venv: Path, *args) -> list:
    """The outer pip acting on ``venv`` (made --without-pip, which saves seconds)."""
    return [sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "--disable-pip-version-check",
            "--quiet", *args]


def requires_by_extra(metadata: str) -> dict[str, set[str]]:
    extras: dict[str, set[str]] = {}
    for line in metadata.splitlines():
        m = re.match(r"Requires-Dist: ([A-Za-z0-9_.\-]+).*?(?:; extra == \"([a-z]+)\")?$", line)
        if m:
            extras.setdefault(m.group(2) or "", set()).add(m.group(1).lower().replace("_", "-"))
    return extras


def third_party_imports(package: Path) -> set[str]:
    found = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                found.add(node.module.split(".")[0])
    return {name for name in found if name not in sys.stdlib_module_names and name != "reference_layers"}


def test_built_sdist_and_wheel_install_in_clean_venvs_and_run_the_readme_command(tmp_path):
    started = time.monotonic()
    dist, venvs = tmp_path / "dist", {kind: tmp_path / f"venv-{kind}" for kind in ("wheel", "sdist")}
    source = source_copy(tmp_path / "source")
    builds = [start([sys.executable, "-m", "build", "--sdist", "--outdir", dist, source], tmp_path),
              start([sys.executable, "-m", "build", "--wheel", "--outdir", dist, source], tmp_path)]
    for venv in venvs.values():
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    bases = [start(pip(venv, "install", *BASE), tmp_path) for venv in venvs.values()]
    for process, what in zip(builds + bases, ["sdist build", "wheel build", "base install", "base install"]):
        finish(process, what)
    (sdist,), (wheel,) = dist.glob("*.tar.gz"), dist.glob("*.whl")
    print(f"built: {time.monotonic() - started:.1f} s")

    # The sdist carries the C source and the license, and nothing compiled on this machine.
    with tarfile.open(sdist) as archive:
        names = archive.getnames()
    assert any(n.endswith("reference_layers/ipc/_hotcore.c") for n in names)
    assert any(n.endswith("/LICENSE") for n in names)
    assert not [n for n in names if n.endswith((".so", ".pyc")) or "/tests/" in n]
    # The wheel was compiled here (this machine has a C compiler) and says its license.
    with zipfile.ZipFile(wheel) as zipped:
        assert any(re.search(r"reference_layers/ipc/_hotcore\..*\.so$", n) for n in zipped.namelist())
        metadata = zipped.read(next(n for n in zipped.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    assert "License-Expression: BSD-3-Clause" in metadata

    installs = [start(pip(venvs["wheel"], "install", wheel), tmp_path),
                start(pip(venvs["sdist"], "install", sdist), tmp_path)]
    for process in installs:
        finish(process, "install")

    print(f"installed: {time.monotonic() - started:.1f} s")
    command, runs = shlex.split(readme_main_command()), []
    for kind, venv in venvs.items():
        workdir = tmp_path / f"run-{kind}"  # the README's `cd "$(mktemp -d)"`: no repo anywhere near
        workdir.mkdir()
        runs.append(start([venv / "bin" / command[0], *command[1:], "-p", "no:cacheprovider"], workdir, clean_env(venv)))
    for kind, process in zip(venvs, runs):
        out = finish(process, f"the README command in the {kind} venv")
        assert "requirement catalogue 0.2.0" in out and " FAIL " not in out, out[-3000:]
        assert re.search(r"\d+ passed", out), out[-3000:]
    for kind, venv in venvs.items():  # the suite ran from the venv, not from this checkout
        where = subprocess.run([venv / "bin" / "python", "-c", "import asgi_conformance, glob, os; "
                                "d = os.path.dirname(asgi_conformance.__file__); print(d); "
                                "print(glob.glob(os.path.join(d, '..', 'reference_layers', 'ipc', '_hotcore*.so')))"],
                               cwd=tmp_path, env=clean_env(venv), capture_output=True, text=True, check=True).stdout
        assert str(venv) in where and str(ROOT) not in where, where
        assert "_hotcore" in where, f"the {kind} install has no compiled IPC hot path: {where}"
    print(f"packaging: {time.monotonic() - started:.1f} s")

    # Each extra pulls exactly what its layer imports; the rest is base or optional.
    extras = requires_by_extra(metadata)
    base = extras[""]
    for layer, extra in EXTRA_OF_LAYER.items():
        modules = third_party_imports(ROOT / "reference_layers" / layer)
        imported = {DISTRIBUTION_OF_MODULE.get(m, m).replace("_", "-") for m in modules}
        imported -= base | OPTIONAL_IMPORTS | {"cryptography"}
        assert imported == extras[extra], (layer, imported, extras[extra])
    shared = third_party_imports(ROOT / "reference_layers" / "core") - OPTIONAL_IMPORTS
    assert shared - base == {"cryptography"} == extras["cryptography"]
