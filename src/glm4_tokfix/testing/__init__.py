"""Property checks for GLM-4 tokenizers, for your own CI.

``glm4_tokfix.testing.strategies`` holds hypothesis strategies (texts, chats,
batches, encode options).
"""
