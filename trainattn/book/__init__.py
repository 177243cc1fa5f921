"""The book's tooling: the papermill runner, tolerance bands, chapter helpers, Colab links, the
browser check."""
