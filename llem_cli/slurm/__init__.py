"""Slurm: the job-array script ``llem slurm`` writes, submitting it, a task's view of its job
and the job's state for ``llem status`` (../shared/DESIGN.md "Slurm").

llem schedules nothing itself here: Slurm allocates nodes and GPUs and requeues; llem cuts the
campaign into shards (:mod:`llem_cli.runs.shards`) and each array task runs its shard with the
usual guarantees (``llem run FILE --resume RUN_DIR --shard K``).
"""
