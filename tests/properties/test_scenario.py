"""Programs as data: image specs, actions, validation, and the JSON form of findings."""

from __future__ import annotations

import json

import pytest

from unpacksim.model.oci import is_index_type
from unpacksim.properties.scenario import (
    ACTIONS,
    Cancel,
    CollectGarbage,
    CreateLease,
    DeleteImage,
    DeleteLease,
    EditLabels,
    ExpireLease,
    Heal,
    HoldSnapshot,
    ImageSpec,
    Inject,
    Program,
    ProgramError,
    Pull,
    Unpack,
    action_from_step,
)
from unpacksim.sim.services import LatencyModel

APP = ImageSpec("registry.test/app:1", ("base", "app"))
OTHER = ImageSpec("registry.test/other:1", ("base", "other", "base"))


def test_equal_tokens_are_the_same_blob_so_bases_are_shared_and_layers_repeat() -> None:
    app, other = APP.build().single, OTHER.build().single
    assert app.layers[0].digest == other.layers[0].digest
    assert other.layers[0].digest == other.layers[2].digest
    assert app.layers[1].digest != other.layers[1].digest
    assert len(set(other.chain_ids)) == 3


def test_a_spec_builds_the_same_image_every_time() -> None:
    twin = ImageSpec("registry.test/app:1", ("base", "app"))
    assert twin.build() is APP.build()  # cached
    assert ImageSpec("registry.test/x:1", ("base",)).build().target.digest == (
        ImageSpec("registry.test/x:1", ("base",)).build().target.digest
    )


def test_other_platforms_make_an_index_with_amd64_first() -> None:
    spec = ImageSpec("registry.test/multi:1", ("base",), platforms=(("linux/arm64", ("lib",)),))
    built = spec.build()
    assert is_index_type(built.target.media_type)
    assert list(built.platforms) == ["linux/amd64", "linux/arm64"]


def test_layer_bytes_sets_the_blob_size() -> None:
    small = ImageSpec("registry.test/s:1", ("base",), layer_bytes=16).build().single
    big = ImageSpec("registry.test/b:1", ("base",), layer_bytes=50_000).build().single
    assert big.layers[0].size > 40_000 > small.layers[0].size


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "app", "layers": ()}, "must be a reference"),
        ({"name": "r.test/a:1", "layers": ("",)}, "empty layer token"),
        ({"name": "r.test/a:1", "layers": (), "layer_bytes": 0}, "at least 1"),
        (
            {"name": "r.test/a:1", "layers": (), "platforms": (("linux/amd64", ()),)},
            "platform twice",
        ),
    ],
)
def test_bad_image_specs_say_what_is_wrong(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ProgramError, match=message):
        ImageSpec(**kwargs)  # type: ignore[arg-type]


def _everything() -> Program:
    return Program(
        images=(APP, OTHER),
        actions=(
            CreateLease(at=0.0, actor="user", lease="l1", expire_in=60.0),
            Pull(at=0.0, actor="p1", image=APP.name, lease="l1", discard=True),
            Pull(at=0.001, actor="p2", image=OTHER.name, max_concurrent_downloads=1),
            Cancel(at=0.002, actor="kubelet", target="p1"),
            Inject(at=0.002, actor="chaos", site="fetch.error", key="sha256:00"),
            DeleteLease(at=0.003, actor="user", of_pull="p2", sync=True),
            ExpireLease(at=0.003, actor="clock", lease="l1"),
            EditLabels(at=0.004, actor="user", image=APP.name, selector="manifest.layers"),
            DeleteImage(at=0.005, actor="user", image=APP.name, sync=True),
            CollectGarbage(at=0.006, actor="gc", sync=True),
            HoldSnapshot(at=0.007, actor="ctr", image=OTHER.name, container="c1"),
            Unpack(at=0.008, actor="client", image=OTHER.name, snapshotter="overlay"),
            Heal(at=0.009, actor="chaos"),
        ),
        snapshotters=("native", "overlay"),
        gc_scheduler=False,
        latency=LatencyModel({"content": [0.001, 0.002]}, default=[0.0005]),
        bandwidth=1_000_000.0,
    )


def test_the_json_steps_round_trip_exactly() -> None:
    program = _everything()
    steps = program.to_json()
    assert [s["action"] for s in steps[:3]] == ["configure", "push", "push"]
    assert {s["action"] for s in steps[3:]} == set(ACTIONS)
    again = Program.from_json(json.loads(json.dumps(steps)))
    assert again.to_json() == steps
    assert again == program  # (the latency model is compared through the JSON above)


def test_describe_reads_as_a_story() -> None:
    lines = _everything().describe().splitlines()
    assert lines[0] == "image registry.test/app:1: layers ['base', 'app']"
    assert lines[3] == "t=0.000 p1: pull image=registry.test/app:1 discard=True lease=l1"
    assert lines[5] == "t=0.002 kubelet: cancel target=p1"


@pytest.mark.parametrize(
    ("actions", "message"),
    [
        (
            (Pull(at=0.1, actor="p1", image=APP.name), Pull(at=0.0, actor="p2", image=APP.name)),
            "time order",
        ),
        ((Pull(at=0.0, actor="p1", image="registry.test/nope:1"),), "no image"),
        ((Cancel(at=0.0, actor="k", target="p9"),), "no earlier pull"),
        ((Pull(at=0.0, actor="p1", image=APP.name, snapshotter="zfs"),), "no snapshotter"),
        ((Pull(at=0.0, actor="p1", image=APP.name),) * 2, "pulls twice"),
        ((DeleteLease(at=0.0, actor="u"),), "exactly one of"),
    ],
)
def test_invalid_programs_are_refused(actions: tuple[Pull, ...], message: str) -> None:
    with pytest.raises(ProgramError, match=message):
        Program(images=(APP,), actions=actions)


def test_bad_actions_and_steps_are_refused() -> None:
    with pytest.raises(ProgramError, match="actor"):
        Pull(at=0.0, actor="", image=APP.name)
    with pytest.raises(ProgramError, match="finite time"):
        Heal(at=-1.0, actor="x")
    with pytest.raises(ProgramError, match="selector"):
        EditLabels(at=0.0, actor="u", image=APP.name, selector="layers")
    with pytest.raises(ProgramError, match="unknown action"):
        action_from_step({"actor": "a", "action": "reboot", "args": {}})
    with pytest.raises(ProgramError, match="bad pull step"):
        action_from_step({"actor": "a", "action": "pull", "args": {"at": 0.0, "colour": 1}})
    with pytest.raises(ProgramError, match="not an image spec"):
        Program.from_json([{"actor": "registry", "action": "push", "args": {"name": "x"}}])
