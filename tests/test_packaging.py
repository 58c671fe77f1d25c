"""The distribution claims one import name, `paretune`, and one command, `paretune`.

The design's folders (`optimizer/`, `storage/`, `bert/`, `tasks/`, `flows/`) stay at the top of
the repository but install under `paretune.*`: a user's own `tasks` or `flows` package must not
collide with ours. Checked on a real wheel installed into a clean virtualenv.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow
# conftest puts the checkout on PYTHONPATH; its paretune.egg-info would read as installed already
CLEAN_ENV = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}


@pytest.fixture(scope="module")
def clean_install(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`pip install --no-deps` of a freshly built wheel into a new virtualenv; its site-packages."""
    work = tmp_path_factory.mktemp("install")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(work / "wheels"), str(ROOT)], check=True, cwd=work)
    venv.create(work / "venv", with_pip=True)
    python = work / "venv" / "bin" / "python"
    (wheel,) = (work / "wheels").glob("paretune-*.whl")
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheel)],
                   check=True, cwd=work, env=CLEAN_ENV)
    return site_packages(python)


def site_packages(python: Path) -> Path:
    return Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True, env=CLEAN_ENV).stdout.strip())


def test_only_paretune_is_added_to_site_packages(clean_install: Path, tmp_path: Path) -> None:
    venv.create(tmp_path / "bare", with_pip=True)
    bare = site_packages(tmp_path / "bare" / "bin" / "python")
    added = {path.name for path in clean_install.iterdir()} - {path.name for path in bare.iterdir()}
    names = {name for name in added if not name.endswith(".dist-info")}
    assert names == {"paretune"}, f"the wheel installs {sorted(names)}"
    assert [name for name in added if name.endswith(".dist-info")] == [
        next(name for name in added if name.startswith("paretune-"))]


def test_the_design_folders_install_under_paretune(clean_install: Path) -> None:
    package = clean_install / "paretune"
    for folder, module in [("optimizer", "suggest.py"), ("storage", "files.py"), ("bert", "distill.py"),
                           ("tasks", "trial.py"), ("flows", "tune.py"), ("dashboard", "app.py")]:
        assert (package / folder / module).is_file(), f"paretune/{folder}/{module} is missing from the wheel"
    assert list(package.glob("dashboard/templates/*.html")), "the dashboard's templates are package data"
    assert not (clean_install / "optimizer").exists() and not (clean_install / "tasks").exists()


def test_the_console_script_is_installed(clean_install: Path) -> None:
    script = clean_install.parents[2] / "bin" / "paretune"
    assert script.is_file()
    assert "paretune.cli" in script.read_text()


def test_import_paretune_loads_no_dask_prefect_or_torch() -> None:
    probe = ("import sys, paretune; heavy = [m for m in ('distributed', 'dask', 'prefect', 'torch', 'transformers') "
             "if m in sys.modules]; print(','.join(heavy))")
    loaded = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True, cwd="/")
    assert loaded.stdout.strip() == ""
