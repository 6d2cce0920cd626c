"""llem: campaigns of LLM inference energy experiments in Docker containers."""

__version__ = "0.1.0"
