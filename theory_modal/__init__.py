"""theory-modal: LLM provider calls as Modal serverless functions.

Importing this package is cheap: it imports neither modal nor litellm. The Modal app lives in
``theory_modal.app``; the shared function bodies in ``theory_modal.handlers``.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
