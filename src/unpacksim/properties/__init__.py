"""The reference graph, invariants, Hypothesis strategies and state machines, the race catalogue."""
