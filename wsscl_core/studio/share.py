"""The studio's choices as URL query parameters, so a link opens the studio on them.

``?forget=class:3&method=wsscl&seed=0&set=epochs=5&set=lr=0.01`` — the forget set in the CLI's
syntax (``class:K``, ``random:FRACTION``), the method, the seed (the random split's, and the run's),
and hyperparameter overrides as repeated ``set=NAME=VALUE``, as the CLI's ``--set``. Only values that
differ from the method's defaults are written. Reading a link checks every value and reports what
it cannot use, in words for the user; the rest is still restored. Nothing runs until the user clicks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from ..data import ForgetSpec, Scenario
from ..errors import WssclError
from ..methods import METHODS, literal_choices, make_config, settable_fields

KEYS = ("forget", "method", "seed", "set", "runs")


@dataclass
class SharedState:
    """What a link asks for; None where it does not say."""

    spec: ForgetSpec | None = None
    method: str | None = None
    seed: int | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    methods: tuple[str, ...] = ()  # the Methods page's set of methods to compare
    problems: list[str] = field(default_factory=list)
    fresh: bool = False  # a link just opened, not the page's own URL written back

    @property
    def empty(self) -> bool:
        return self.spec is None and self.method is None and self.seed is None and not self.overrides and not self.methods


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def to_query(spec: ForgetSpec, method: str | None = None, overrides: Mapping[str, Any] | None = None,
             scenario: Scenario | None = None, methods: Sequence[str] = ()) -> dict[str, str | list[str]]:
    """Query parameters for a choice; overrides equal to the method's default for ``scenario`` are left out."""
    query: dict[str, str | list[str]] = {"forget": str(spec), "seed": str(spec.seed)}
    if method is not None:
        query["method"] = method
        defaults = vars(make_config(method, scenario=scenario or ("class" if spec.kind == "class" else "random")))
        changed = [f"{k}={_text(v)}" for k, v in (overrides or {}).items() if k in defaults and defaults[k] != v]
        if changed:
            query["set"] = changed
    if methods:
        query["runs"] = ",".join(methods)
    return query


def _parse_value(text: str, default: Any, choices: tuple | None) -> Any:
    if isinstance(default, bool):
        lowered = text.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ValueError("expected true or false")
    if isinstance(default, int):
        return int(text)
    if isinstance(default, float):
        return float(text)
    if choices is not None and text not in choices:
        raise ValueError(f"expected one of {', '.join(map(str, choices))}")
    return text


def from_query(params: Mapping[str, Sequence[str]], num_classes: int) -> SharedState:
    """A :class:`SharedState` from query parameters (each key mapped to all its values)."""
    state = SharedState()
    first = {k: (list(v)[-1] if v else "") for k, v in params.items()}
    if first.get("seed"):
        try:
            state.seed = int(first["seed"])
            if state.seed < 0:
                raise ValueError
        except ValueError:
            state.problems.append(f"The link's seed {first['seed']!r} is not a whole number of 0 or more.")
            state.seed = None
    if first.get("forget"):
        try:
            spec = ForgetSpec.parse(first["forget"], state.seed or 0)
            if spec.kind == "class" and any(not 0 <= c < num_classes for c in spec.classes):
                raise WssclError(f"The link's forget set {first['forget']!r} names a class that does not exist "
                                 f"(classes are 0..{num_classes - 1}).")
            if spec.kind == "random" and not 0.0 < spec.fraction < 1.0:
                raise WssclError(f"The link's forget fraction {spec.fraction:g} must be between 0 and 1.")
            state.spec = spec
        except WssclError as exc:
            state.problems.append(str(exc))
    if first.get("method"):
        if first["method"] in METHODS:
            state.method = first["method"]
        else:
            state.problems.append(f"The link's method {first['method']!r} is not one of {', '.join(METHODS)}.")
    if first.get("runs"):
        wanted = [m.strip() for m in first["runs"].split(",") if m.strip()]
        unknown = [m for m in wanted if m not in METHODS]
        if unknown:
            state.problems.append(f"The link names unknown methods: {', '.join(unknown)}.")
        state.methods = tuple(m for m in wanted if m in METHODS)
    settings = list(params.get("set", ()))
    if settings and state.method is None:
        state.problems.append("The link sets hyperparameters but names no method; they are ignored.")
    elif settings:
        scenario = "class" if state.spec is not None and state.spec.kind == "class" else "random"
        config = make_config(state.method, scenario=scenario)
        defaults = {f.name: getattr(config, f.name) for f in settable_fields(config)}
        choices = literal_choices(type(config))
        for item in settings:
            name, sep, value = item.partition("=")
            name = name.strip()
            if not sep or name not in defaults:
                state.problems.append(f"The link's setting {item!r} is not a hyperparameter of "
                                      f"{METHODS[state.method].label} ({', '.join(defaults)}).")
                continue
            try:
                state.overrides[name] = _parse_value(value.strip(), defaults[name], choices.get(name))
            except ValueError as exc:
                state.problems.append(f"The link's value for {name}, {value!r}, cannot be used ({exc}).")
    return state
