"""Stage 4 — how well metrics predict transfer: log-AUC of fine-tuning curves, rank
correlations with Fisher and bootstrap intervals, the leaderboard (:mod:`.analysis`), and the
trivial baselines every metric is compared with (:mod:`.baselines`).

May import: :mod:`transferability.metrics` and :mod:`transferability.artifacts`.
"""
