"""One pruning method per module; importing this package registers them all."""

from . import magnitude, nm, random  # noqa: F401
