"""The campaign runner's building blocks, each on plain data and free of Docker.

``decision`` says what to do after a probe or an experiment, ``prune`` which
configurations an out-of-memory failure makes pointless, ``journal`` records and
replays a run, ``lock`` keeps two runs of one compose project apart and
``rundir`` lays out the run directory. The runner loop wires them together.
"""
