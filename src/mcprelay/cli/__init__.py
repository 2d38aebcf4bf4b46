"""The ``mcprelay`` command line: one module per command group."""
