"""Runs one attempt of one experiment, locally or on a node: bundle, exec dir, scratch,
limits, logs, artifacts and the script's process."""
