"""Evaluation: metrics and figures, the files a test writes, cross-validation summaries."""
