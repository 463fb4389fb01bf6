"""Data: sources, generated datasets, parsers, the manifest, sampling and transforms."""
