"""icetide kernel: settings, errors, catalog, JVM, embedded stack, events, metrics, CLI root."""

__version__ = "0.1.0"
