"""A real containerd driven as a black box: daemon, loopback registry, pull harness, readback."""
