"""Learning-rate schedules as pure functions of the step."""

from __future__ import annotations

import math


def warmup_cosine_factor(step: int, warmup_steps: int, total_steps: float) -> float:
    """Multiplier of the base learning rate: linear warm-up, then cosine decay to zero.

    ``(step + 1) / warmup_steps`` during warm-up (the reference code's schedule), then
    ``0.5 * (1 + cos(pi * (step - warmup) / (total - warmup)))``. With an unknown (infinite)
    total the rate stays at the base value after warm-up.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if not math.isfinite(total_steps) or total_steps <= warmup_steps:
        return 1.0
    progress = min(1.0, (step - warmup_steps) / (total_steps - warmup_steps))
    return 0.5 * (1.0 + math.cos(math.pi * progress))
