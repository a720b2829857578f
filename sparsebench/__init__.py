"""sparsebench: deploy and benchmark sparse (pruned) neural networks with honest measurements."""

__version__ = "0.1.0"

from .artifact import load  # noqa: E402
from .errors import MissingExtraError, SparsebenchError  # noqa: E402
from .load import LoadedModel, LoadOptions  # noqa: E402
from .zoo import create_model, list_models  # noqa: E402

__all__ = [
    "LoadOptions",
    "LoadedModel",
    "MissingExtraError",
    "SparsebenchError",
    "__version__",
    "create_model",
    "list_models",
    "load",
]
