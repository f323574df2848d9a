"""Validation of audit records against the JSON Schemas in `audit/`."""

from __future__ import annotations

import functools
import json
from typing import Any

import jsonschema

from forensic_vsr.resources import AUDIT_SCHEMAS

RECORD_TYPES = (
    "evidence.ingest",
    "policy.decision",
    "step.run",
    "output.write",
    "report.generate",
    "run.complete",
    "run.aborted",
)


@functools.cache
def _validator(name: str) -> jsonschema.protocols.Validator:
    path = AUDIT_SCHEMAS / f"{name}.schema.json"
    schema = json.loads(path.read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def schema_errors(name: str, instance: Any) -> list[str]:
    """Every violation of schema `name`, as 'path: message' strings (empty when valid)."""
    errors = sorted(_validator(name).iter_errors(instance), key=lambda e: list(e.absolute_path))
    return [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in errors]


def record_errors(payload: Any) -> list[str]:
    """Validate a record payload and, when its type is known, its body."""
    problems = schema_errors("record", payload)
    if problems:
        return problems
    return [f"body/{p}" for p in schema_errors(payload["type"], payload["body"])]
