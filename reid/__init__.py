"""reid: the person re-identification pipeline behind the DVC stages in `stages/`.

A trained model outside the pipeline:

    from reid import load_model
    model = load_model("models/resnet50/market1501.pt")
    features = model.embed("crops/")        # (N, D) float32, as the evaluate stage scored them
"""

__version__ = "0.1.0"
__all__ = ["load_model"]


def __getattr__(name: str):
    """`reid.load_model`, imported when first asked for (PEP 562): the DVC stages import
    `reid` submodules only and so never load the API (tests/dvc_stages.py skips this body)."""
    if name == "load_model":
        from reid.api import load_model

        return load_model
    raise AttributeError(f"module 'reid' has no attribute {name!r}")
