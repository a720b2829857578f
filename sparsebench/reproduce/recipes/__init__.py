"""One seed experiment per module; importing this package registers them all."""

from . import assignment, gradient_vs_magnitude, gumbel_gates, lottery_ticket  # noqa: F401
