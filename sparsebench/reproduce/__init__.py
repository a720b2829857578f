"""`sparsebench reproduce`: the seed experiments, one recipe per module in `recipes/`, each on
top of the pruning methods, training, `profile` and `compare` (not private copies of them)."""

from . import recipes  # noqa: F401 - registers the recipes
from .base import RECIPES, Outcome, Recipe, ReproduceConfig
from .run import reproduce

__all__ = ["RECIPES", "Outcome", "Recipe", "ReproduceConfig", "reproduce"]
