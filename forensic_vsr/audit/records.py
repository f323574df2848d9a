"""Typed access to the signed records' wire formats.

Every reader of a record (verify, reproduce, the report, the tests) goes through these, so the
path into a record is written once."""

from __future__ import annotations

from typing import Any


def step_annotations(statement: dict[str, Any]) -> dict[str, Any]:
    """The run summary a `step.run` statement carries as its one byproduct's annotations."""
    return statement["predicate"]["runDetails"]["byproducts"][0]["annotations"]


def external_parameters(statement: dict[str, Any]) -> dict[str, Any]:
    """The recorded recipe of a `step.run` statement."""
    return statement["predicate"]["buildDefinition"]["externalParameters"]


def internal_parameters(statement: dict[str, Any]) -> dict[str, Any]:
    """What ran: devices, platform, library versions, determinism settings."""
    return statement["predicate"]["buildDefinition"]["internalParameters"]
