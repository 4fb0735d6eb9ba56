"""The errors a user can fix: bad input data and bad settings, each told in one line.

``reelgraph fit`` and ``python -m reelgraph.distributed.train`` print a :class:`UserError` as one
line (``reelgraph: error: <message>``) and exit with status 2; ``--traceback`` or
``REELGRAPH_TRACEBACK=1`` shows the whole stack instead.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
from typing import Any, Callable



class DataError(ValueError):
    """Bad input data: the message names the file and the column."""


class ConfigError(ValueError):
    """A setting out of range: the message names the flag, the value given and the rule."""


UserError = (DataError, ConfigError, argparse.ArgumentError)  # the last: the CLI's own parser


def valid_number(value: Any, ok: Callable[[Any], bool] | None = None) -> bool:
    """Whether ``value`` is a finite int or float (``bool`` is not a number here) and, if given,
    ``ok(value)``."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return number and math.isfinite(value) and (ok is None or bool(ok(value)))


def require(flag: str, value: Any, ok: Callable[[Any], bool], rule: str) -> None:
    """Raises ``ConfigError("<flag>=<value>: must be <rule>")`` unless :func:`valid_number`."""
    if not valid_number(value, ok):
        raise ConfigError(f"{flag}={value!r}: must be {rule}")


def positive_int(flag: str, value: Any, low: int = 1) -> None:
    """:func:`require` an int ``>= low``."""
    require(flag, value, lambda v: v == int(v) and v >= low, f"an int >= {low}")


def traceback_wanted(argv: list[str]) -> tuple[bool, list[str]]:
    """Whether ``--traceback`` (removed from ``argv``) or ``REELGRAPH_TRACEBACK=1`` asks for the
    full stack of a user error."""
    wanted = "--traceback" in argv or os.environ.get("REELGRAPH_TRACEBACK", "") not in ("", "0")
    return wanted, [a for a in argv if a != "--traceback"]


def user_error(exc: BaseException | None) -> BaseException | None:
    """The :class:`UserError` that ``exc`` is or was raised from (a library, e.g. the CLI's
    argument parser, may wrap it), or ``None``."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, UserError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def exit_on_user_error(run: Callable[[list[str]], Any], argv: list[str], prog: str) -> Any:
    """``run(argv)``; a :class:`UserError` (or an error raised from one) becomes one line on
    stderr and exit status 2, unless :func:`traceback_wanted`."""
    wanted, argv = traceback_wanted(argv)
    try:
        return run(argv)
    except Exception as e:
        cause = user_error(e)
        if wanted or cause is None:
            raise
        message = " ".join(str(cause).split())  # one line, whatever the message held
        print(f"{prog}: error: {message} (--traceback shows where)", file=sys.stderr)
        raise SystemExit(2) from None
