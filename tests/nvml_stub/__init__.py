"""A stand-in ``libnvidia-ml.so.1`` for the tests, and the helpers that build and drive it."""
