"""Every module here defines benchmarks with `@bench.registry.benchmark`; `discover()` imports
them all (modules whose name starts with "_" excepted). Add a benchmark by adding a module."""
