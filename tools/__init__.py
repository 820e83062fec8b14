"""Maintenance scripts of the course (run them as modules, e.g. `python -m tools.build_book`)."""
