"""Auditors in the loop: review queues (queues.py), every reviewer's decision (decisions.py), decision files for
reviewers who work elsewhere (exchange.py), agreement figures (figures.py, from core.metrics.agreement) and
reviewed labels published as a new benchmark version (overrides.py). The app's Review screen and the
``misalign-tui review`` commands are its two faces."""
