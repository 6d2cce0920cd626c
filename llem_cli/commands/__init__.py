"""One module per command; each exposes a plain typed function the CLI calls."""
