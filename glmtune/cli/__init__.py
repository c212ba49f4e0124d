"""The ``glmtune`` command line."""
