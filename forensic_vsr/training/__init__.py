"""Reproducible training of the fidelity models we ship (`fvsr train CONFIG`)."""
