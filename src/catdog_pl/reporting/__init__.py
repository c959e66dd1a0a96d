"""``report``: a run drawn as PNGs and a Markdown page. Imports ``inference``, ``data`` and ``evaluation``."""
