"""``llem doctor``: checks of the environment a campaign needs, each with its fix."""
