"""Scoring answers and reporting them: recall and overlap metrics, paired bootstrap intervals, the
report and chart. Imports runner.core and runner.questions."""
