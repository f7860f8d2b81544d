"""Stage 6 — what the report shows: figures drawn from the tidy tables
(:mod:`.figures` is the one way in; :mod:`.plots`, :mod:`.plots_studies`, :mod:`.plots_model`
draw them) and the tables as HTML pages (:mod:`.tables`).

May import every stage below it; never :mod:`transferability.jobs`.
"""
