"""Enhancement operations on native planes."""
