"""Reports for people and CI: one self-contained HTML page (`page.py`, charts in `svg.py`),
the GitHub step summary and the bench gates as JUnit XML (`ci.py`)."""
