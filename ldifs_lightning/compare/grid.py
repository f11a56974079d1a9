"""The comparison grid: which methods, their strength knobs and the values each is run at.

Every method is a config in ``configs/compare/`` (the shipped tiny CLIP on an embedded domain);
a method with a strength knob is run at several values so the report can draw its
accuracy-forgetting frontier. :func:`check_grid` turns user choices into the runs, with a one-line
error for anything outside what the method allows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass


def _positive(value: float) -> bool:
    return value > 0


def _non_negative(value: float) -> bool:
    return value >= 0


def _fraction(value: float) -> bool:
    return 0 <= value < 1


def _unit_interval(value: float) -> bool:
    return 0 <= value <= 1


@dataclass(frozen=True)
class Method:
    """One method of the comparison.

    Attributes:
        label: Its name in tables and plots.
        config: Its ``ldifs fit`` config (None: no fit of its own, ZS and WiSE-FT).
        knob: Name of its strength knob (None: one setting).
        argument: The ``ldifs fit`` option the knob sets.
        values: The knob values of the full grid.
        quick: The one value of ``--quick`` (also what the config holds).
        allowed: What a knob value must satisfy, and how to say it.
    """

    label: str
    config: str | None
    knob: str | None = None
    argument: str | None = None
    values: tuple[float, ...] = ()
    quick: float | None = None
    allowed: tuple[Callable[[float], bool], str] | None = None


_REGULARIZER_WEIGHT = "--model.init_args.regularizers.init_args.weight"
#: WiSE-FT interpolates the FT run made at this learning rate (FT's config value).
WISE_FT_BASE_LR = 1.0e-3

METHODS: dict[str, Method] = {
    "zs": Method("ZS", None),
    "lp": Method("LP", "compare/lp"),
    "ft": Method(
        "FT", "compare/ft", "lr", "--model.init_args.lr", (3e-4, 1e-3), WISE_FT_BASE_LR,
        (_positive, "> 0"),
    ),
    "lpft": Method("LP-FT", "compare/lpft"),
    "ls": Method(
        "LS", "compare/ls", "epsilon", "--model.init_args.label_smoothing", (0.1, 0.3), 0.1,
        (_fraction, "in [0, 1)"),
    ),
    "l2sp": Method(
        "L2SP", "compare/l2sp", "alpha", _REGULARIZER_WEIGHT, (0.05, 0.5, 5.0), 0.5,
        (_non_negative, ">= 0"),
    ),
    "flyp": Method("FLYP", "compare/flyp"),
    "flyp_ce": Method("FLYP-CE", "compare/flyp_ce"),
    "wiseft": Method(
        "WiSE-FT", None, "alpha", None, (0.25, 0.5, 0.75), 0.5, (_unit_interval, "in [0, 1]")
    ),
    "ldifs": Method(
        "LDIFS", "compare/ldifs", "lambda", _REGULARIZER_WEIGHT, (30.0, 300.0, 3000.0), 300.0,
        (_non_negative, ">= 0"),
    ),
}  # fmt: skip
#: The embedded domains: each is the task once, the other three the forgetting suite.
TASKS: tuple[str, ...] = ("digits", "fashion", "shapes", "textures")
QUICK_TASK = "textures"


@dataclass(frozen=True)
class Run:
    """One cell of the grid: a method at one knob value (None: no knob) on a task and seed."""

    task: str
    seed: int
    method: str
    value: float | None


def check_grid(
    methods: Sequence[str],
    tasks: Sequence[str],
    seeds: int,
    values: Mapping[str, Sequence[float]] | None = None,
    quick: bool = False,
) -> list[Run]:
    """The runs of a comparison, in the order they are made; one-line errors for bad choices.

    ``values`` replaces a method's knob values (e.g. ``{"ldifs": [10, 100]}``); ``quick`` keeps
    one value per knob (its config's).

    Example:
        >>> [r.value for r in check_grid(["ldifs"], ["shapes"], 1, quick=True)]
        [300.0]
    """
    if not methods:
        raise ValueError(f"the comparison grid is empty: name methods from {list(METHODS)}")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; choose from {list(METHODS)}")
    if not tasks:
        raise ValueError(f"the comparison has no task: name tasks from {list(TASKS)}")
    wrong = [t for t in tasks if t not in TASKS]
    if wrong:
        raise ValueError(
            f"unknown task(s) {wrong}: the comparison runs on the embedded domains {list(TASKS)}"
        )
    if len(set(tasks)) != len(tasks) or len(set(methods)) != len(methods):
        raise ValueError("a task or method is listed twice in the comparison grid")
    if seeds < 1:
        raise ValueError(f"seeds={seeds}: run at least one seed")
    chosen: dict[str, tuple[float | None, ...]] = {}
    for name in methods:
        method = METHODS[name]
        if method.knob is None:
            chosen[name] = (None,)
            continue
        given = (values or {}).get(name)
        grid = tuple(float(v) for v in given) if given is not None else method.values
        if quick and given is None and method.quick is not None:
            grid = (method.quick,)
        if not grid:
            raise ValueError(f"{name}: no {method.knob} value to run")
        assert method.allowed is not None
        test, allowed = method.allowed
        bad = [v for v in grid if not test(v)]
        if bad:
            raise ValueError(f"{name}: {method.knob}={bad[0]} is outside its range ({allowed})")
        chosen[name] = grid
    extra = sorted(set(values or {}) - set(methods))
    if extra:
        raise ValueError(f"values given for {extra}, which are not in the grid's methods")
    return [
        Run(task, seed, name, value)
        for seed in range(seeds)
        for task in tasks
        for name in methods
        for value in chosen[name]
    ]
