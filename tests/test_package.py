"""The package ships its data: a wheel built from this tree, installed non-editable into a fresh
virtual environment and run from outside the repository, finds its policies, audit schemas,
model cards and weights, and a real enhance of a classical and a learned model verifies.

The new environment sees the main environment's dependencies (torch, PyAV, ...) through a
folder of links to its site-packages that leaves out forensic-vsr itself (its editable finder,
.pth file and metadata), so the only forensic_vsr it can import is the installed wheel."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import PASSPHRASE, ROOT

DATA_FOLDERS = {"audit": ("*.schema.json",), "policies": ("*.json",), "models": ("*.json", "*.pth", "train/*.json")}


@dataclass(frozen=True)
class Installed:
    python: Path
    fvsr: Path
    site_packages: Path
    work: Path  # a folder outside the repository, the cwd of every command

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "FVSR_MODELS_PATH")}
        return {**env, "PYTHONNOUSERSITE": "1", "FVSR_KEY_PASSPHRASE": PASSPHRASE}

    def run(self, *args: str | os.PathLike[str]) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [str(self.fvsr), *map(str, args)],
            cwd=self.work,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=300,
            stdin=subprocess.DEVNULL,
        )
        assert proc.returncode == 0, f"fvsr {' '.join(map(str, args))} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
        return proc


def _checked(cmd: list[str], what: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL, **kwargs)  # type: ignore[call-overload]
    if proc.returncode != 0:
        pytest.fail(f"{what} failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}", pytrace=False)
    return proc  # type: ignore[no-any-return]


def _source_copy(dest: Path) -> Path:
    """The files a clean checkout of this working tree has (tracked, plus untracked ones git does
    not ignore), so the build neither writes into the repository nor sees its build leftovers."""
    listed = _checked(["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"], "git ls-files").stdout
    for name in filter(None, listed.split("\0")):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


def _dependency_links(dest: Path) -> Path:
    """Links to every entry of this environment's site-packages except forensic-vsr's own."""
    dest.mkdir()
    paths = sysconfig.get_paths()
    for folder in dict.fromkeys((paths["purelib"], paths["platlib"])):
        for entry in Path(folder).iterdir():
            name = entry.name.lower()
            if name.startswith(("__editable__", "forensic_vsr", "forensic-vsr")) or name.endswith(".pth") or (dest / entry.name).exists():
                continue
            (dest / entry.name).symlink_to(entry)
    return dest


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    base = tmp_path_factory.mktemp("package")
    src = _source_copy(base / "src")
    wheels = base / "wheels"
    # Offline with the environment's setuptools; without one, pip fetches it from PyPI.
    isolation = ["--no-build-isolation"] if importlib.util.find_spec("setuptools") else []
    _checked(
        [sys.executable, "-m", "pip", "wheel", "-q", "--disable-pip-version-check", "--no-deps", *isolation, "-w", str(wheels), str(src)],
        "building the wheel",
    )
    (wheel,) = wheels.glob("forensic_vsr-*.whl")
    venv = base / "venv"
    _checked([sys.executable, "-m", "venv", "--without-pip", str(venv)], "creating the virtual environment")
    python = venv / "bin" / "python"
    site_packages = Path(
        _checked([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], "locating site-packages").stdout.strip()
    )
    links = _dependency_links(base / "dependencies")
    (site_packages / "_fvsr_test_dependencies.pth").write_text(f"import site; site.addsitedir({str(links)!r})\n")
    work = base / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    _checked(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps", "--no-index", str(wheel)],
        "installing the wheel",
        cwd=work,
        env=env,
    )
    return Installed(python, venv / "bin" / "fvsr", site_packages.resolve(), work)


def test_the_installed_wheel_is_what_runs_and_carries_every_data_file(installed: Installed) -> None:
    probe = (
        "import json, forensic_vsr, forensic_vsr.resources as r; "
        "print(json.dumps([forensic_vsr.__file__, str(r.AUDIT_SCHEMAS), str(r.POLICIES), str(r.MODELS)]))"
    )
    proc = subprocess.run([str(installed.python), "-c", probe], cwd=installed.work, env=installed.env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    module, audit, policies, models = (Path(p).resolve() for p in json.loads(proc.stdout))
    package = installed.site_packages / "forensic_vsr"
    assert module == package / "__init__.py"
    assert (audit, policies, models) == (package / "_data" / "audit", package / "_data" / "policies", package / "_data" / "models")

    modules = sorted(p.relative_to(ROOT) for p in (ROOT / "forensic_vsr").rglob("*.py"))
    missing = sorted({".".join(p.parent.parts) for p in modules if not (installed.site_packages / p).is_file()})
    assert not missing, f"not in the wheel (add them to [tool.setuptools] packages in pyproject.toml): {', '.join(missing)}"

    # every non-Python file inside the package (schemas, the review page's static files) ships too
    tracked = subprocess.run(["git", "ls-files", "forensic_vsr"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    extra = [Path(f) for f in tracked if not f.endswith(".py")]
    assert extra, "no package data files found"
    absent = [str(f) for f in extra if not (installed.site_packages / f).is_file()]
    assert not absent, f"not in the wheel (add them to [tool.setuptools.package-data]): {', '.join(absent)}"

    for folder, patterns in DATA_FOLDERS.items():
        shipped = [p for pattern in patterns for p in sorted((ROOT / folder).glob(pattern))]
        assert shipped, folder
        for path in shipped:
            copy = package / "_data" / folder / path.relative_to(ROOT / folder)
            assert copy.is_file(), f"{folder}/{path.relative_to(ROOT / folder)} is not in the wheel"
            assert copy.read_bytes() == path.read_bytes(), f"{copy} differs from {path}"


def test_models_and_policies_work_from_the_wheel(installed: Installed) -> None:
    listed = installed.run("models", "list").stdout
    for card in ("lanczos", "fidelity-sr-x2", "perceptual-sr-x4"):
        assert card in listed
    card = json.loads(installed.run("models", "show", "fidelity-sr-x2").stdout)
    assert Path(card["_card"]["path"]).resolve().is_relative_to(installed.site_packages)
    explained = installed.run("policy", "explain", "--mode", "evidential", "--model", "lanczos", "--scale", "2").stdout
    assert explained.strip().splitlines()[-1] == "ALLOWED"


@pytest.fixture(scope="module")
def examiner_key(installed: Installed) -> Path:
    key = installed.work / "examiner.key"
    installed.run("keys", "generate", "--out", key, "--name", "Package Test")
    return key


@pytest.mark.parametrize(("model", "frames", "scale"), [("lanczos", "0:3", ["--scale", "2"]), ("fidelity-sr-x2", "0:1", [])])
def test_enhance_and_verify_from_the_wheel(
    installed: Installed, examiner_key: Path, carphone_distorted: Path, model: str, frames: str, scale: list[str]
) -> None:
    bundle = installed.work / f"bundle-{model}"
    recipe = ["--mode", "evidential", "--model", model, *scale, "--frames", frames]
    installed.run("enhance", carphone_distorted, "-o", bundle, *recipe, "--key", examiner_key)
    installed.run("verify", bundle, "--pubkey", f"{examiner_key}.pub", "--evidence", carphone_distorted)
