"""Evaluation: metrics, figures, calibration, test result files, cross-validation summaries."""
