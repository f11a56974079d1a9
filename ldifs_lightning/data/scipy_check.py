"""scipy is needed only to read MATLAB files (SVHN, Stanford Cars, the ImageNet devkit)."""

from __future__ import annotations

import importlib.util


def require_scipy(dataset: str) -> None:
    """Fail with the install command when scipy is missing."""
    if importlib.util.find_spec("scipy") is None:
        raise ModuleNotFoundError(
            f"{dataset}: reading its .mat files needs scipy; install it with `pip install scipy`"
        )
