"""A real containerd driven as a black box: daemon, loopback registry, pull harness, readback.

==================  ==========================================================================
module              holds
==================  ==========================================================================
``prereqs``         what the tier needs (root, ``containerd``, ``go``, Debian's Go sources)
``daemon``          :class:`~unpacksim.real.daemon.Daemon`: containerd in a temporary directory
``registry``        :class:`~unpacksim.real.registry.Registry`: loopback OCI registry with faults
``harness``         the Go pull harness (``harness/main.go``): build, cache, run operations
``readback``        a daemon's state as a :class:`~unpacksim.model.db.DB`
``scenarios``       :class:`~unpacksim.real.scenarios.Scenario`: images, steps, faults, as data
``catalogue``       the differential scenarios
``runner``          :func:`~unpacksim.real.runner.run_real`: a scenario on a fresh daemon
``outcome``         :class:`~unpacksim.real.outcome.ScenarioRun` and its canonical form
``compare``         :func:`~unpacksim.real.compare.compare_runs`: two runs, their divergences
``reference_side``  :func:`~unpacksim.real.reference_side.run_reference`: a scenario on the
                    reference (preset ``v1.6``), registry faults as fetch fault sites
``divergences``     the documented, explained divergences between containerd and the reference
``differential``    :func:`~unpacksim.real.differential.run_differential`: both sides, compared,
                    classified, findings
==================  ==========================================================================

Importing this package needs neither root nor containerd; running a daemon does.
"""
