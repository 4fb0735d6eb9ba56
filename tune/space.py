"""Search spaces: a YAML keyed by the dotted keys of ``reelgraph fit`` -> Ray Tune domains.

A space file maps each key of the fit config (exactly as ``reelgraph fit --help`` spells it) to
one distribution, or to a plain value that every trial gets::

    model.model: reelgraph.models.SimGCLConfig          # fixed: the model class of every trial
    model.lr: {loguniform: [1.0e-3, 3.0e-2]}
    model.model.init_args.tau: {choice: [0.1, 0.2, 0.5]}
    data.num_negatives: {randint: [1, 9]}               # 1..8: Ray's upper bound is exclusive

Distributions (Ray Tune's, same bounds): ``uniform [lo, hi]``, ``loguniform [lo, hi]``,
``quniform [lo, hi, q]`` (floats); ``randint [lo, hi)``, ``lograndint [lo, hi)`` (ints);
``choice [a, b, ...]`` (sampled), ``grid [a, b, ...]`` (every value, ``num_samples`` times).

A trial's values reach the Trainer as command-line overrides (:func:`apply`) after
``--config <fit yaml>``, so the fit YAML stays the one copy of every other hyper-parameter.
Everything is checked before any trial starts (:func:`parse_space`, then :func:`check_keys`
against the fit config's own parser); each problem is one ``ValueError`` naming the key.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import yaml

from reelgraph.errors import valid_number

FLOAT_RANGES = {"uniform": 2, "loguniform": 2, "quniform": 3}   # name -> number of arguments
INT_RANGES = {"randint": 2, "lograndint": 2}
OPTIONS = ("choice", "grid")
DISTRIBUTIONS = (*FLOAT_RANGES, *INT_RANGES, *OPTIONS)
FIXED = "fixed"                                                 # a plain value, not searched
RESERVED = ("config", "print_config")                           # CLI actions, not config keys


class _Loader(yaml.SafeLoader):
    """YAML 1.1 (PyYAML) reads ``1e-3`` as a string; here it is a float, as in YAML 1.2."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+.0123456789"))


@dataclass(frozen=True)
class Param:
    """One key of a space.

    Attributes:
        key: the fit config's dotted key (``model.model.init_args.tau``).
        kind: a name of :data:`DISTRIBUTIONS`, or ``"fixed"`` for a plain value.
        args: ``(lo, hi)`` or ``(lo, hi, q)`` for ranges, the options for ``choice``/``grid``,
            ``(value,)`` when fixed.
    """

    key: str
    kind: str
    args: tuple

    @property
    def searched(self) -> bool:
        return self.kind != FIXED

    @property
    def log(self) -> bool:
        """Sampled on a log scale (plots use a log axis)."""
        return self.kind in ("loguniform", "lograndint")

    @property
    def categorical(self) -> bool:
        return self.kind in OPTIONS

    def domain(self) -> Any:
        """The Ray Tune object for ``Tuner(param_space=...)`` (the value itself when fixed)."""
        from ray import tune

        if self.kind == FIXED:
            return self.args[0]
        if self.kind == "grid":
            return tune.grid_search(list(self.args))
        if self.kind == "choice":
            return tune.choice(list(self.args))
        return getattr(tune, self.kind)(*self.args)

    def probes(self) -> list[Any]:
        """Values checked against the fit config's parser: the ends of a range (as the range's
        type, so an int field rejects a float range) or every option."""
        if self.kind in FLOAT_RANGES:
            return [float(self.args[0]), float(self.args[1])]
        if self.kind in INT_RANGES:
            return [self.args[0], self.args[1] - 1]         # the upper bound is exclusive
        return list(self.args)


def _range(key: str, kind: str, args: Any) -> tuple:
    n = {**FLOAT_RANGES, **INT_RANGES}[kind]
    form = "[low, high, q]" if n == 3 else "[low, high]"
    if not isinstance(args, list) or len(args) != n or not all(valid_number(a) for a in args):
        raise ValueError(f"{key}: {kind} takes {form} (finite numbers), got {args!r}")
    if kind in INT_RANGES:
        if not all(isinstance(a, int) for a in args):
            raise ValueError(f"{key}: {kind} bounds must be integers, got {args!r} (a float "
                             "field: use uniform or loguniform)")
    else:
        args = [float(a) for a in args]
    lo, hi = args[0], args[1]
    if lo >= hi:
        what = "[low, high)" if kind in INT_RANGES else "[low, high]"
        raise ValueError(f"{key}: empty range {kind} {args!r}; needs low < high ({what})")
    if kind.startswith("log") and lo <= 0:
        raise ValueError(f"{key}: {kind} needs low > 0, got {lo!r}")
    if n == 3 and args[2] <= 0:
        raise ValueError(f"{key}: {kind} needs q > 0, got {args[2]!r}")
    return tuple(args)


def parse_param(key: Any, value: Any) -> Param:
    """One entry of a space file (shape and bounds only; :func:`check_keys` checks the key)."""
    if not isinstance(key, str) or not re.fullmatch(r"[A-Za-z_][\w@-]*(\.[\w@-]+)*", key):
        raise ValueError(f"{key!r}: not a dotted key of the fit config (e.g. model.lr)")
    if key in RESERVED:
        raise ValueError(f"{key}: a command-line action, not a config key")
    if not isinstance(value, Mapping):
        return Param(key, FIXED, (value,))
    if len(value) != 1:
        raise ValueError(f"{key}: one distribution per key, as {{name: arguments}}; got "
                         f"{dict(value)!r}")
    (kind, args), = value.items()
    if kind not in DISTRIBUTIONS:
        raise ValueError(f"{key}: unknown distribution {kind!r}; one of {', '.join(DISTRIBUTIONS)}")
    if kind in OPTIONS:
        if not isinstance(args, list) or not args:
            raise ValueError(f"{key}: empty {kind}; give a non-empty list of values, got {args!r}")
        return Param(key, kind, tuple(args))
    return Param(key, kind, _range(key, kind, args))


def parse_space(text: str) -> dict[str, Param]:
    """The space of a YAML text (file order), every entry's shape and bounds checked."""
    try:
        raw = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as e:
        raise ValueError(f"space: not YAML: {' '.join(str(e).split())}") from None
    if not isinstance(raw, Mapping) or not raw:
        raise ValueError("space: a non-empty mapping of dotted keys is needed, e.g. "
                         "'model.lr: {loguniform: [1.0e-3, 3.0e-2]}'")
    space = {}
    for key, value in raw.items():
        space[key] = parse_param(key, value)
    if not any(p.searched for p in space.values()):
        raise ValueError("space: no key is searched (every value is fixed); give one a "
                         f"distribution ({', '.join(DISTRIBUTIONS)})")
    return space


def load_space(path: str) -> dict[str, Param]:
    with open(path) as f:
        return parse_space(f.read())


def param_space(space: Mapping[str, Param]) -> dict[str, Any]:
    """``Tuner(param_space=...)``: dotted key -> Ray Tune domain (or fixed value)."""
    return {key: p.domain() for key, p in space.items()}


# -- values -> command-line arguments ----------------------------------------------------------
def plain(value: Any) -> Any:
    """Python scalars/lists from NumPy ones (Ray's samplers return ``np.int64``, ...)."""
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        return value.item()
    return value


def format_value(value: Any) -> str:
    """A value as jsonargparse reads it on the command line (a YAML scalar or flow list)."""
    value = plain(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return value
    return json.dumps(value)   # lists, mappings: JSON is YAML's flow style


def apply(args: Sequence[str], values: Mapping[str, Any]) -> list[str]:
    """``args`` (``["--config", <yaml>, ...]``) followed by ``--key=value`` for each of
    ``values``, parents before children (``model.model`` before ``model.model.init_args.x``),
    so a trial's values override the fit YAML's and nothing else changes."""
    keys = sorted(values, key=lambda k: k.count("."))   # stable: file order within a depth
    return [*args, *(f"--{k}={format_value(values[k])}" for k in keys)]


# -- the keys against the fit config's parser -------------------------------------------------
_UNKNOWN = ("unrecognized arguments", "not accepted", "not expected", "no action for",
            "does not accept")


def _reason(message: str) -> str:
    """The most specific line of a jsonargparse error, on one line."""
    lines = [" ".join(line.split()).lstrip("- ") for line in message.splitlines()]
    lines = [line for line in lines if line and "NoneType" not in line
             and not line.startswith(("Given value", "Subtypes", "Errors", "Does not validate"))]
    for pattern in ("not accepted", "unrecognized", "not expected", "Expected a dot", "Expected a <",
                    "Expected a"):
        for line in lines:
            if pattern in line:
                return line
    return lines[-1] if lines else " ".join(message.split())


def check_keys(space: Mapping[str, Param], parser: Any, args: Sequence[str]) -> None:
    """Parses ``args`` (the fit config) plus each value a key can take with the fit config's
    parser (a jsonargparse parser made with ``exit_on_error=False``); a key the config lacks, or
    a value its type rejects (a float range on an int field, a class the field does not take),
    raises ``ValueError`` naming the key. Fixed values are applied first, parents first, so
    ``model.model.init_args.*`` keys are checked against the class the space picks."""
    base = list(args)
    params = sorted(space.values(), key=lambda p: (p.searched, p.key.count(".")))
    for p in params:
        for value in p.probes():
            try:
                parser.parse_args(apply(base, {p.key: value}))
            except (Exception, SystemExit) as e:  # jsonargparse.ArgumentError, or an exit
                message = str(e)
                reason = _reason(message)
                if any(u in message.lower() for u in _UNKNOWN):
                    raise ValueError(f"{p.key}: not a key of the fit config ({reason})") from None
                hint = (" (an int field: use randint, lograndint or a choice of ints)"
                        if "<class 'int'>" in message and isinstance(value, float) else "")
                raise ValueError(f"{p.key}: {p.kind} value {format_value(value)} rejected by the "
                                 f"fit config: {reason}{hint}") from None
        if not p.searched:
            base = apply(base, {p.key: p.args[0]})
