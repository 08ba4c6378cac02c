"""Fault sites and plans (unpacksim.sim.faults)."""

from __future__ import annotations

import pytest

from unpacksim.model.errdefs import AlreadyExists, NotFound, Unavailable, Unknown
from unpacksim.sim.choose import FifoChooser, RandomChooser, ReplayChooser
from unpacksim.sim.env import Environment
from unpacksim.sim.errors import SimUsageError
from unpacksim.sim.faults import (
    STANDARD_SITES,
    FaultPlan,
    FaultSite,
    Rule,
    get_site,
    register_site,
)

BLOB_X = "sha256:" + "a" * 64
BLOB_Y = "sha256:" + "b" * 64


def test_standard_sites_are_named_and_documented() -> None:
    names = [s.name for s in STANDARD_SITES]
    assert names == [
        "fetch.error",
        "fetch.truncate",
        "fetch.corrupt",
        "content.ref_locked",
        "snapshots.prepare.exists",
        "diff.apply.error",
        "diff.apply.wrong_diff_id",
        "snapshots.commit.exists",
        "ctx.cancel",
        "gc.run",
        "labels.remove",
    ]
    for site in STANDARD_SITES:
        assert site.description and site.mirrors
        assert site.is_error_site != bool(site.effect)


def test_scripted_second_fetch_of_blob_x_fails_with_unavailable() -> None:
    env = Environment(
        faults=FaultPlan.scripted(Rule("fetch.error", key=BLOB_X, hit=2, error=Unavailable))
    )
    faults = env.faults
    assert faults.check("fetch.error", key=BLOB_X) is False
    assert faults.check("fetch.error", key=BLOB_Y) is False
    with pytest.raises(Unavailable) as caught:
        faults.check("fetch.error", key=BLOB_X)
    assert caught.value.injected
    assert str(caught.value) == f"{BLOB_X}: unavailable"
    assert faults.check("fetch.error", key=BLOB_X) is False
    report = faults.report()
    assert report.fired == (("fetch.error", BLOB_X, 3),)  # the 3rd hit of the site, 2nd of X
    assert [(s.site, s.hits, s.fires) for s in report.sites] == [("fetch.error", 4, 1)]


def test_injected_errors_carry_containerds_messages() -> None:
    plan = FaultPlan.scripted(
        Rule("snapshots.prepare.exists"),
        Rule("content.ref_locked"),
        Rule("fetch.error", error=NotFound),
    )
    env = Environment(faults=plan)
    chain = "sha256:" + "c" * 64
    with pytest.raises(AlreadyExists) as prepare:
        env.faults.check("snapshots.prepare.exists", key=chain)
    assert str(prepare.value) == f'target snapshot "{chain}": already exists'
    with pytest.raises(Unavailable) as locked:
        env.faults.check("content.ref_locked", key="default/1/layer-" + BLOB_X)
    assert str(locked.value) == f"ref default/1/layer-{BLOB_X} locked: unavailable"
    with pytest.raises(NotFound) as fetch:
        env.faults.check(
            "fetch.error", key=BLOB_X, detail="application/vnd.oci.image.layer.v1.tar+gzip"
        )
    assert str(fetch.value) == (
        f"could not fetch content descriptor {BLOB_X} "
        "(application/vnd.oci.image.layer.v1.tar+gzip) from remote: not found"
    )


def test_effect_sites_return_true_and_are_traced() -> None:
    env = Environment(faults=FaultPlan.scripted(Rule("fetch.truncate", times=None, hit=2)))
    fired = [env.faults.check("fetch.truncate", key=BLOB_X) for _ in range(4)]
    assert fired == [False, True, True, True]
    faults = [e for e in env.trace.events if e.type == "fault"]
    assert [(e.op, e.outcome, e.injected) for e in faults] == [
        ("fetch.truncate", "effect", True)
    ] * 3


def test_exploring_takes_every_decision_through_the_chooser() -> None:
    def fires(env: Environment) -> list[str]:
        out = []
        for i in range(6):
            for site in ("fetch.error", "gc.run"):
                try:
                    out.append(f"{site}:{env.faults.check(site, key=str(i))}")
                except Unknown:
                    out.append(f"{site}:Unknown")
                except NotFound:
                    out.append(f"{site}:NotFound")
        return out

    fifo = Environment(FifoChooser(), faults=FaultPlan.exploring(["fetch.error", "gc.run"]))
    assert all(x.endswith("False") for x in fires(fifo))  # 0 everywhere: no fault at all
    assert fifo.faults.report().reached_never_fired == ["fetch.error", "gc.run"]

    chooser = RandomChooser(11)
    explored = Environment(chooser, faults=FaultPlan.exploring(["fetch.error", "gc.run"]))
    first = fires(explored)
    assert not all(x.endswith("False") for x in first)
    replay = Environment(
        ReplayChooser(chooser.schedule), faults=FaultPlan.exploring(["fetch.error", "gc.run"])
    )
    assert fires(replay) == first


def test_max_fires_bounds_an_explored_site() -> None:
    # Decision 0 activates the site; every later fire decision says "fire".
    env = Environment(
        ReplayChooser("0:1,1:1,2:1,3:1,4:1"), faults=FaultPlan.exploring(["gc.run"], max_fires=2)
    )
    assert [env.faults.check("gc.run") for _ in range(4)] == [True, True, False, False]


def test_report_names_sites_the_plan_armed_but_nobody_reached() -> None:
    env = Environment(faults=FaultPlan.scripted(Rule("diff.apply.error"), Rule("gc.run")))
    env.faults.check("gc.run")
    report = env.faults.report()
    assert report.fired_sites == ["gc.run"]
    assert report.unreached == ("diff.apply.error",)
    assert "never reached" in report.describe()


def test_misuse_is_explained() -> None:
    with pytest.raises(SimUsageError, match=r"unknown fault site 'fetch\.eror'"):
        FaultPlan.scripted(Rule("fetch.eror"))
    with pytest.raises(SimUsageError, match="effect site"):
        FaultPlan.scripted(Rule("gc.run", error=NotFound))
    with pytest.raises(SimUsageError, match="not bound"):
        FaultPlan.scripted(Rule("gc.run")).check("gc.run")
    with pytest.raises(SimUsageError, match="already registered"):
        register_site(FaultSite("gc.run", "something else"))
    assert register_site(get_site("gc.run")) is not None  # identical: fine
