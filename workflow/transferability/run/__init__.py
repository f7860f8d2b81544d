"""Stage 7 — running the workflow: the configuration's check and derived names
(:mod:`.config`), each rule's resources and their growth on retries (:mod:`.resources`), and
the fix of Snakemake's scheduler (:mod:`.scheduler_patch`). Read by ``rules/*.smk``.

May import every stage below it; never :mod:`transferability.jobs`. ``config`` imports torch
only for rare names (checking an unknown architecture).
"""
