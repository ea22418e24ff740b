"""Where targets come from: each source yields target specifications, never facts.

``environments``: the environments named in ``targets.environments``. The
exporter's own environment is always there too, as the host's default
target (``/api/v1/status/``).
"""
