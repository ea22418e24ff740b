"""Targets found among running processes: procfs, their roots, their cgroups."""
