"""The implementation interface: registry, ``module:attribute`` paths, conformance checks."""

from __future__ import annotations

import textwrap
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from unpacksim.model.builders import build_image
from unpacksim.unpack.drive import pull_images, world_for
from unpacksim.unpack.eras import PRESETS, preset
from unpacksim.unpack.interface import (
    Implementation,
    ImplementationError,
    register,
    registered,
    resolve,
    run_pull,
    unregister,
)
from unpacksim.unpack.reference import ReferenceImplementation
from unpacksim.unpack.results import PullOptions, PullResult

IMAGE = build_image("registry.test/app:1", [{"a": b"1"}])


@pytest.fixture
def scratch_names() -> Iterator[list[str]]:
    """Names registered by a test, unregistered after it."""
    names: list[str] = []
    yield names
    for name in names:
        unregister(name)


def test_the_presets_are_registered_implementations() -> None:
    assert registered()[: len(PRESETS)] == list(PRESETS)
    for name, era in PRESETS.items():
        impl = resolve(name)
        assert isinstance(impl, ReferenceImplementation) and impl.era == era
        assert isinstance(impl, Implementation) and impl.name == name and impl.description


def test_world_options_reach_the_daemon() -> None:
    assert world_for("v2.0").snapshot_stores["native"].lease_on_exists
    assert not world_for("v1.6").snapshot_stores["native"].lease_on_exists


def test_unknown_name_lists_the_registered_ones() -> None:
    with pytest.raises(ImplementationError, match=r"unknown implementation 'v3'.*'seed'"):
        resolve("v3")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no_such_module_xyz:thing", "cannot import module 'no_such_module_xyz'"),
        ("unpacksim.unpack.eras:nothing", "has no attribute 'nothing'"),
        ("unpacksim.unpack.eras:PRESETS", r"is not an Implementation: it lacks \['name'"),
        (":thing", "bad implementation path"),
        ("unpacksim.unpack.reference:ReferenceImplementation", "without arguments failed"),
    ],
)
def test_bad_paths_say_what_is_wrong(spec: str, message: str) -> None:
    with pytest.raises(ImplementationError, match=message):
        resolve(spec)


def test_register_refuses_a_taken_name_unless_replacing(scratch_names: list[str]) -> None:
    first = ReferenceImplementation(preset("seed"), name="scratch")
    scratch_names.append("scratch")
    register(first)
    with pytest.raises(ImplementationError, match="already registered"):
        register(ReferenceImplementation(preset("v1.6"), name="scratch"))
    second = register(ReferenceImplementation(preset("v1.6"), name="scratch"), replace=True)
    assert resolve("scratch") is second
    with pytest.raises(ImplementationError, match="not an Implementation"):
        register(object())  # type: ignore[arg-type]


def test_a_variant_registered_by_name_runs(scratch_names: list[str]) -> None:
    # Not the README's "v1.6-nostat": tests/test_readme.py registers that one for the session.
    name = "scratch-v1.6-nostat"
    variant = ReferenceImplementation(preset("v1.6").but(stat_skip=False), name=name)
    scratch_names.append(variant.name)
    register(variant)
    world = world_for(name)
    world.push(IMAGE)
    results, _ = pull_images(world, name, [IMAGE.name] * 2)
    assert [r.implementation for r in results] == [name] * 2
    assert all(r.ok for r in results)


def test_an_implementation_plugged_in_by_module_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "my_unpacker.py").write_text(
        textwrap.dedent(
            """
            from unpacksim.unpack.eras import preset
            from unpacksim.unpack.pull import pull

            class MyUnpacker:
                name = "mine"
                description = "v1.6 without the Stat skip, as a plug-in"
                world_options = {"lease_on_exists": False}

                def pull(self, world, ctx, ref, opts):
                    era = preset("v1.6").but(stat_skip=False)
                    return pull(world, ctx, ref, opts, era, implementation=self.name)
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    impl = resolve("my_unpacker:MyUnpacker")
    assert impl.name == "mine"
    world = world_for(impl)
    world.push(IMAGE)
    (result,), _ = pull_images(world, "my_unpacker:MyUnpacker", [IMAGE.name])
    assert result.ok and result.implementation == "mine"


class _NotAGenerator:
    name = "broken"
    description = "pull returns a list"
    world_options: ClassVar[dict[str, Any]] = {}

    def pull(self, world: Any, ctx: Any, ref: str, opts: PullOptions) -> Any:
        return []


class _ReturnsNothing:
    name = "silent"
    description = "pull returns None"
    world_options: ClassVar[dict[str, Any]] = {}

    def pull(self, world: Any, ctx: Any, ref: str, opts: PullOptions) -> Any:
        yield world.env.timeout(0)


def _drive(impl: Any) -> None:
    world = world_for("seed")

    def body() -> Generator[Any, Any, PullResult]:
        return (yield from run_pull(impl, world, world.context(), IMAGE.name))

    gen = body()
    next(gen)  # runs until the first yield (or raises)


def test_run_pull_rejects_a_pull_that_is_not_a_generator() -> None:
    with pytest.raises(ImplementationError, match="not a generator"):
        _drive(_NotAGenerator())


def test_run_pull_rejects_a_result_that_is_not_a_pull_result() -> None:
    world = world_for("seed")
    errors: list[BaseException] = []

    def body() -> Generator[Any, Any, None]:
        try:
            yield from run_pull(_ReturnsNothing(), world, world.context(), IMAGE.name)
        except ImplementationError as exc:
            errors.append(exc)

    world.go(body(), name="pull")
    world.run()
    assert len(errors) == 1 and "not a PullResult" in str(errors[0])
