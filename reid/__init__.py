"""reid: the person re-identification pipeline behind the DVC stages in `stages/`."""

__version__ = "0.1.0"
