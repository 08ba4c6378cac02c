"""SimPy runtime: controlled scheduling, contexts, Go-like primitives, timed services, faults, traces."""
