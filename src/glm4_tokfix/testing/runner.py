"""Run the property battery on one tokenizer: count violations over N examples, then shrink the first one.

This is the engine of ``glm4-tokfix check``. For each property it makes two
hypothesis runs with the same seed and ``database=None`` (nothing is written
to disk):

1. *explore*: ``max_examples=N``, generate phase only; every example runs and
   every violation is counted (the first one is kept);
2. *shrink* (only when something was violated): generate + shrink phases,
   replaying the explore run from memory until the first failure and then
   letting hypothesis minimise it. Shrinking stops calling the tokenizer after
   ``max_shrink_calls`` new examples or ``shrink_seconds``, whichever comes
   first; the smallest failure found so far is reported.

    >>> from glm4_tokfix.testing.runner import run_properties
    >>> report = run_properties(tok, examples=50, seed=1)
    >>> report.ok, report.total_examples, [r.name for r in report.results if r.violations]
    (True, 600, [])

Exceptions raised by the tokenizer are violations (the assertion helpers
turn them into AssertionError); an unexpected exception in a helper is
counted as a violation too, with its type in the message. An example that
needs an optional package that is not installed (jinja2 for chat templates,
torch or numpy for tensors) is not counted; a property none of whose
examples could run is reported as skipped (``PropertyResult.skipped`` names
the package), not as passed.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence

from glm4_tokfix.testing.properties import Example, Property, select

#: Default number of examples per property for ``glm4-tokfix check``.
DEFAULT_EXAMPLES = 100
#: Default cap on new tokenizer calls while shrinking one property's counterexample.
DEFAULT_MAX_SHRINK_CALLS = 150
#: Default wall-clock cap on shrinking one property's counterexample.
DEFAULT_SHRINK_SECONDS = 5.0


@dataclass
class Counterexample:
    """A violating example: the helper's arguments, the call reproducing it, the violation message."""

    arguments: Example
    call: str
    message: str
    shrunk: bool

    def as_dict(self) -> Dict[str, Any]:
        return {"arguments": self.arguments, "call": self.call, "message": self.message, "shrunk": self.shrunk}


@dataclass
class PropertyResult:
    name: str
    summary: str
    examples: int = 0
    violations: int = 0
    counterexample: Optional[Counterexample] = None
    seconds: float = 0.0
    shrink_calls: int = 0
    #: why the property could not run (an optional package it needs is not installed), else None
    skipped: Optional[str] = None

    def as_dict(self) -> Dict[str, Any]:
        return {
            "name": self.name,
            "summary": self.summary,
            "examples": self.examples,
            "violations": self.violations,
            "skipped": self.skipped,
            "counterexample": self.counterexample.as_dict() if self.counterexample else None,
            "seconds": round(self.seconds, 3),
        }


@dataclass
class Report:
    seed: int
    examples_per_property: int
    results: List[PropertyResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def total_examples(self) -> int:
        return sum(r.examples for r in self.results)

    @property
    def total_violations(self) -> int:
        return sum(r.violations for r in self.results)

    @property
    def ok(self) -> bool:
        """No violation (properties that could not run, ``skipped``, are not violations)."""
        return self.total_violations == 0

    @property
    def skipped(self) -> List[PropertyResult]:
        return [r for r in self.results if r.skipped]

    def as_dict(self) -> Dict[str, Any]:
        return {
            "ok": self.ok,
            "seed": self.seed,
            "examples_per_property": self.examples_per_property,
            "properties": [r.as_dict() for r in self.results],
            "total_examples": self.total_examples,
            "total_violations": self.total_violations,
            "skipped": [r.name for r in self.skipped],
            "seconds": round(self.seconds, 3),
        }


class Progress:
    """Progress callbacks; the default does nothing (``glm4_tokfix.check`` draws a bar on stderr)."""

    def start(self, total: int) -> None: ...

    def example(self, prop: Property) -> None: ...

    def shrinking(self, prop: Property) -> None: ...

    def done(self, prop: Property, result: PropertyResult) -> None: ...

    def finish(self) -> None: ...


class _Violation(Exception):
    """Raised to hypothesis when an example violates the property (always from the same line)."""


class _Unavailable(Exception):
    """Raised to hypothesis when the property needs an optional package that is not installed."""


def missing_package(exc: ImportError, packages: Sequence[str] = ("jinja2", "torch", "numpy")) -> Optional[str]:
    """The one of ``packages`` (optional packages) an ImportError is about, when it is not installed; None
    when the error is about something else (then it is a real error). The package is the error's module name
    or a package the message names, case aside (transformers says "PyTorch is not installed")."""
    import importlib.util

    names = [exc.name.split(".")[0]] if getattr(exc, "name", None) else []  # type: ignore[union-attr]  # getattr checked that it is set
    message = str(exc).lower()
    names += [name for name in packages if name in message]
    for name in names:
        if name not in packages:
            continue
        try:
            if importlib.util.find_spec(name) is None:
                return name
        except (ImportError, ValueError):
            return name
    return None


def _key(example: Example) -> bytes:
    return hashlib.sha1(repr(example).encode("utf-8", "surrogatepass")).digest()


def _violation_message(prop: Property, tokenizer: Any, example: Example) -> Optional[str]:
    try:
        prop.check(tokenizer, example)
    except ImportError as exc:
        missing = missing_package(exc)
        if missing is not None:  # not the tokenizer's fault: the property cannot run here
            raise _Unavailable(f"needs {missing}, which is not installed ({exc})") from exc
        return f"{type(exc).__name__} while checking: {exc}"
    except AssertionError as exc:
        return str(exc) or "AssertionError (no message)"
    except Exception as exc:
        return f"{type(exc).__name__} while checking: {exc}"
    return None


def _settings(examples: int, shrink: bool) -> Any:
    from hypothesis import HealthCheck, Phase, Verbosity, settings

    return settings(
        settings.get_profile("default"),  # independent of any profile loaded in this process (CI, pytest)
        max_examples=examples,
        database=None,
        deadline=None,
        derandomize=False,
        phases=(Phase.generate, Phase.shrink) if shrink else (Phase.generate,),
        suppress_health_check=list(HealthCheck),
        verbosity=Verbosity.quiet,
        print_blob=False,
        report_multiple_bugs=False,
    )


def run_property(
    tokenizer: Any,
    prop: Property,
    examples: int = DEFAULT_EXAMPLES,
    seed: int = 0,
    progress: Optional[Progress] = None,
    max_shrink_calls: int = DEFAULT_MAX_SHRINK_CALLS,
    shrink_seconds: float = DEFAULT_SHRINK_SECONDS,
) -> PropertyResult:
    """Run one property for ``examples`` examples with ``seed``; see the module docstring."""
    from hypothesis import given
    from hypothesis import seed as with_seed

    if examples <= 0:
        raise ValueError(f"examples must be a positive integer, got {examples}")
    progress = progress or Progress()
    result = PropertyResult(prop.name, prop.summary)
    skip = prop.skip_reason(tokenizer) if hasattr(prop, "skip_reason") else None
    if skip is not None:  # e.g. no chat template to check: skipped, not passed
        result.skipped = skip
        progress.done(prop, result)
        return result
    verdicts: Dict[bytes, Optional[str]] = {}  # example key -> violation message (None: passed)
    unavailable: List[str] = []  # why examples could not run (an optional package is not installed)
    strategy = prop.strategy()
    started = time.perf_counter()

    @given(example=strategy)
    def explore(example: Example) -> None:
        try:
            message = _violation_message(prop, tokenizer, example)
        except _Unavailable as exc:  # this example needs a package that is not installed: not counted
            unavailable.append(str(exc))
            progress.example(prop)
            return
        result.examples += 1
        verdicts[_key(example)] = message
        if message is not None:
            result.violations += 1
            if result.counterexample is None:
                result.counterexample = Counterexample(example, prop.call(example), message, shrunk=False)
        progress.example(prop)

    with_seed(seed)(_settings(examples, shrink=False)(explore))()
    if result.examples == 0 and unavailable:  # no example could run here: skipped, not passed
        result.skipped = unavailable[0]

    if result.violations:
        progress.shrinking(prop)
        budget_end = time.perf_counter() + shrink_seconds
        last: Dict[str, Any] = {}

        @given(example=strategy)
        def shrink(example: Example) -> None:
            key = _key(example)
            if key in verdicts:
                message = verdicts[key]
            elif result.shrink_calls >= max_shrink_calls or time.perf_counter() > budget_end:
                return  # budget spent: new examples count as passing, known ones keep their verdict
            else:
                result.shrink_calls += 1
                try:
                    message = _violation_message(prop, tokenizer, example)
                except _Unavailable:
                    message = None
                verdicts[key] = message
            if message is not None:
                last["example"], last["message"] = example, message
                raise _Violation(message)

        try:
            with_seed(seed)(_settings(examples, shrink=True)(shrink))()
        except _Violation:
            # hypothesis replays the minimal failing example last, so ``last`` holds it
            result.counterexample = Counterexample(
                last["example"], prop.call(last["example"]), last["message"], shrunk=True
            )
        except Exception:
            pass
    result.seconds = time.perf_counter() - started
    progress.done(prop, result)
    return result


def run_properties(
    tokenizer: Any,
    properties: Optional[Sequence[Property]] = None,
    examples: int = DEFAULT_EXAMPLES,
    seed: int = 0,
    progress: Optional[Progress] = None,
    max_shrink_calls: int = DEFAULT_MAX_SHRINK_CALLS,
    shrink_seconds: float = DEFAULT_SHRINK_SECONDS,
    on_result: Optional[Callable[[PropertyResult], None]] = None,
) -> Report:
    """Run ``properties`` (default: the whole battery) on ``tokenizer``; a :class:`Report`."""
    properties = tuple(properties) if properties is not None else select()
    progress = progress or Progress()
    report = Report(seed=seed, examples_per_property=examples)
    started = time.perf_counter()
    progress.start(len(properties) * examples)
    try:
        for prop in properties:
            result = run_property(tokenizer, prop, examples, seed, progress, max_shrink_calls, shrink_seconds)
            report.results.append(result)
            if on_result is not None:
                on_result(result)
    finally:
        progress.finish()
    report.seconds = time.perf_counter() - started
    return report
