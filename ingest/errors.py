"""What can stop an ingest, as messages for the operator (the CLI maps them to exit codes)."""


class SourceError(ValueError):
    """The path given to ingest cannot be used at all (exit code 2)."""


class IngestError(RuntimeError):
    """The ingest job failed after it started; what was finished is kept (exit code 1)."""
