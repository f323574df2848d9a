"""Regenerates tests/golden/frame_hashes.json: output (and map) frame hashes of every shipped
operation on the test fixtures. Run it only when a change of output is intended and explained:
the golden-hash test exists so that a refactor cannot change a single output sample unseen.

    python tests/golden/make_golden.py            # writes tests/golden/frame_hashes.json
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from golden_cases import CASES, run_case  # noqa: E402


def main() -> None:
    out: dict[str, dict[str, list[str]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        key = Path(tmp) / "k.key"
        env = {**os.environ, "FVSR_KEY_PASSPHRASE": "golden-passphrase"}
        subprocess.run(
            [sys.executable, "-m", "forensic_vsr", "keys", "generate", "--out", str(key), "--name", "Golden"], check=True, env=env
        )
        for name in CASES:
            out[name] = run_case(name, Path(tmp), key, env)
            print(name, len(out[name]["output"]), "frames", flush=True)
    (ROOT / "tests/golden/frame_hashes.json").write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
