"""Fault-injection proofs of llem (``make chaos``): each scenario breaks something on purpose.

Run them all with ``python chaos/run_all.py`` (``--quick`` for fewer repeats); each module has a
``run(quick, seed) -> Row`` function and can also run alone (``python -m chaos.kill9``).
"""
