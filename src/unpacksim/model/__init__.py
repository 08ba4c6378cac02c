"""containerd's state and semantics, in memory: standard library only, synchronous, deterministic.

Importing this package must not import simpy, hypothesis or networkx (a test checks it).
"""
