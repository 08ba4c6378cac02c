"""unpacksim's benchmarks: ``python -m benchmarks`` (or ``tox -e bench``) runs them all."""
