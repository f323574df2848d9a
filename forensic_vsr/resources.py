"""The one place that knows where forensic-vsr's shipped data lives: the JSON Schemas of audit
records, the built-in policies and their schema, and the model cards, their schema and weights.

They are package data (`forensic_vsr._data.audit`, `.policies`, `.models`; pyproject.toml maps
the repository's top-level `audit/`, `policies/` and `models/` folders there), found with
`importlib.resources`, so a wheel installed anywhere reads its own copy and an editable install
reads the repository's. Readers need real files (torch.load of weights, a card's weights beside
it), so each folder is taken `as_file` once and held for the life of the process: for a package
on the file system, as pip installs it, that is the folder itself (from Python 3.12 on, a package
in an archive is extracted to a temporary folder that is removed at exit)."""

from __future__ import annotations

import atexit
import contextlib
from importlib.resources import as_file, files
from pathlib import Path

_held = contextlib.ExitStack()
atexit.register(_held.close)


def _data_folder(name: str) -> Path:
    """The real folder of the shipped data package `forensic_vsr._data.<name>`."""
    return _held.enter_context(as_file(files(f"forensic_vsr._data.{name}")))


AUDIT_SCHEMAS = _data_folder("audit")
POLICIES = _data_folder("policies")
MODELS = _data_folder("models")
