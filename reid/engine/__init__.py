"""The engine: the one training loop, feature extraction, checkpoints."""
