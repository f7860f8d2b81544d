"""Rule table_html: one result table as a sortable HTML page for the report, CSV inside."""

import logging

from transferability.artifacts import atomic_path
from transferability.jobs.logs import setup_logging
from transferability.report.tables import csv_to_html

sm = snakemake  # noqa: F821
setup_logging(sm.log[0])
page = csv_to_html(sm.input[0]).encode("utf-8")
with atomic_path(sm.output[0]) as tmp:
    tmp.write_bytes(page)
logging.getLogger("table_html").info("%s -> %s (%d bytes)", sm.input[0], sm.output[0], len(page))
