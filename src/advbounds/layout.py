"""Where the pipeline writes its tables and figures, and in which formats.

A module of its own, without imports, so that both the catalog (read while the workflow parses)
and :mod:`advbounds.artifacts` (run by every table and figure job) read the one list; importing it
does not tie a job's code fingerprint (:mod:`advbounds.codehash`) to the report package.
"""

FIGURES_DIR = "figures"
#: CSV for machines, Markdown for the README and notebooks, LaTeX for papers
TABLE_SUFFIXES = ("csv", "md", "tex")
#: PDF (vector, for print) and PNG (for the report)
FIGURE_SUFFIXES = ("pdf", "png")
