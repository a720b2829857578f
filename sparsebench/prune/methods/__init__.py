"""One pruning method per module; importing this package registers them all."""

from . import (  # noqa: F401
    channel,
    gradient,
    grasp,
    gumbel,
    lottery,
    magnitude,
    movement,
    nm,
    random,
    regression,
    rigl,
    sensitivity,
    snip,
    synflow,
)
