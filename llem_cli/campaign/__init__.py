"""The campaign file: loading with source positions, the pydantic model, and its checks."""
