"""Package data: the JSON Schemas of audit records (read through forensic_vsr.resources)."""
