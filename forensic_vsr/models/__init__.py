"""Model registry (cards in `models/`), network architectures and the inference runner."""
