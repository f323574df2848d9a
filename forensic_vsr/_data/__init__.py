"""The data forensic-vsr ships: `audit` (record JSON Schemas), `models` (model cards, their
schema, weights) and `policies` (policies and their schema). Their files live in the
repository's top-level `audit/`, `models/` and `policies/`, mapped here by pyproject.toml;
read them through `forensic_vsr.resources`."""
