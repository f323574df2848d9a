"""Package data: the built-in policies and their schema (read through forensic_vsr.resources)."""
