"""One hypothesis test per property of ``glm4_tokfix.testing.properties``, over the ``glm4_tokenizer`` fixture.

``test_<property name>`` draws the helper's arguments and calls the helper; a
failure shows hypothesis' falsifying example and the helper's message (row,
ids around the first difference, options). Examples per test come from the
hypothesis profile (``--hypothesis-profile``); the deadline is off because the
first call on a real vocabulary can take longer than hypothesis' default.
"""

from __future__ import annotations

from typing import Any, Callable

from hypothesis import HealthCheck, given, settings

from glm4_tokfix.testing.properties import PROPERTIES, Example, Property


def _make_test(prop: Property) -> Callable[..., None]:
    def test(glm4_tokenizer: Any) -> None:
        # given() inside the test, so that hypothesis' report shows the example, not the tokenizer's long repr
        def check(example: Example) -> None:
            __tracebackhide__ = True
            prop.check(glm4_tokenizer, example)

        check.__name__ = check.__qualname__ = prop.helper.__name__
        check = given(example=prop.strategy())(check)
        settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])(check)()

    test.__name__ = test.__qualname__ = f"test_{prop.name}"
    test.__doc__ = f"{prop.summary} ({prop.helper.__name__})."
    return test


for _prop in PROPERTIES:
    globals()[f"test_{_prop.name}"] = _make_test(_prop)
del _prop
