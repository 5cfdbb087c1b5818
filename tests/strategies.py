"""The test suite's hypothesis strategies: the public ones of glm4_tokfix.testing, in one place."""

from glm4_tokfix.testing.strategies import (  # noqa: F401
    PREFIX,
    SPECIAL_LITERALS,
    batches,
    chats,
    encode_options,
    fragments,
    prompt_texts,
    texts,
)
