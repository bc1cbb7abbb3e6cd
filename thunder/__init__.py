"""thunder: LLM serving on heterogeneous GPU clouds."""

__version__ = "0.1.0"

__all__ = ["__version__"]
