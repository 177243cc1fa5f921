"""Presentation: the one table builder (:func:`~trainattn.report.tables.markdown_table`), every
figure (:mod:`~trainattn.report.figures`), the paper's numbers, worded answers."""
