"""Where the project's data directories are: JSON Schemas of audit records (`audit/`),
policies (`policies/`) and model cards and weights (`models/`)."""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
AUDIT_SCHEMAS = PROJECT_ROOT / "audit"
POLICIES = PROJECT_ROOT / "policies"
MODELS = PROJECT_ROOT / "models"
