"""Stage 8 — the functions the rule scripts (``workflow/scripts/``) call, one module per kind
of work: :mod:`.sources` (pre-training, loading and saving source models), :mod:`.targets`
(subsets and splits of targets), :mod:`.extract` (activations), :mod:`.metric_jobs` (metric
tables), :mod:`.finetune` (fine-tuning curves, both tracks), :mod:`.tables` (the tidy tables
and correlations), :mod:`.studies` (the three studies), :mod:`.logs` (every job's log).

May import every stage below it. Nothing below imports this package.
"""
