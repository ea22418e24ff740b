"""Pure, synchronous functions that gather facts; every source is injected for tests."""
