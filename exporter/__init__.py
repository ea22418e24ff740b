"""status-exporter: what a Python server runs, as status JSON and Prometheus metrics."""

__version__ = "0.1.0"
