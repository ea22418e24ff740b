"""The advisory database: OSV records read from folders and zips (osv, osv_zip), loaded in
a child process (worker), held with its load history (database), and matched against an
environment's modules (matching)."""
