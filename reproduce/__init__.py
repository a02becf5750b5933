"""Batches of notebooks (papermill), resumable, and the report that sets the paper beside our runs."""
