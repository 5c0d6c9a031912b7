"""The bottom layer shared by every other package: atomic file writing, the distributed gather,
the EMA teacher and the schedules. Nothing here imports from the rest of selfsup except
``selfsup.errors``, so methods, losses and evaluation can all use it (docs/architecture.md)."""
