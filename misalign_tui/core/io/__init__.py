"""Reading and writing benchmarks and results in files."""
