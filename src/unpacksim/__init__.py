"""unpacksim: simulation and property testing of containerd's image-unpack semantics."""

__version__ = "0.1.0"
