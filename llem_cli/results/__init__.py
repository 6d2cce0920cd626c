"""Reading a run's records back and summarising them (``llem results``)."""
