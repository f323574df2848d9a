"""What several commands share: the --models-dir list and atomic --json output."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from forensic_vsr.atomic import atomic_write


def models_dirs(args: argparse.Namespace) -> list[Path]:
    """The extra model-card directories a command was given (--models-dir, repeatable)."""
    return [Path(d) for d in getattr(args, "models_dir", None) or ()]


def write_json(path: str, obj: Any) -> None:
    """A benchmark's --json output, written atomically."""
    atomic_write(Path(path), json.dumps(obj, indent=2) + "\n")
