"""The glm4-tokfix property battery as a pytest suite, over the ``glm4_tokenizer`` fixture.

Run it in your CI against your model folder (the tokenizer is loaded with the fix)::

    pytest --pyargs glm4_tokfix.testing.suite --glm4-tokenizer path/to/glm-4-9b-chat

Options: ``--hypothesis-profile glm4-quick`` (10 examples per test),
``glm4-ci`` (200, derandomized, no example database), ``glm4-thorough``
(1000), or any profile your conftest registers; ``--glm4-unpatched`` loads
the folder's own remote code without the fix (expect failures on upstream's).
Without ``--glm4-tokenizer`` it checks the embedded tiny GLM-4 tokenizer.
"""
