"""Package data: model cards, their schema and weights (read through forensic_vsr.resources)."""
