"""The registry model: references, resolve, chunked fetches in simulated time, fetch faults."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest

from unpacksim.model.builders import build_image
from unpacksim.model.digest import digest_of
from unpacksim.model.errdefs import Canceled, FailedPrecondition, NotFound, Unknown
from unpacksim.model.oci import MEDIA_TYPE_OCI_LAYER_GZIP, Descriptor
from unpacksim.sim.context import Context
from unpacksim.sim.faults import FaultPlan, Rule
from unpacksim.sim.go import Gen
from unpacksim.unpack.goerrors import GoError
from unpacksim.unpack.registry import Network, parse_reference
from unpacksim.unpack.world import World

REF = "registry.test/library/app:1"


def drive(world: World, gen: Generator[Any, Any, Any]) -> Any:
    """Run ``gen`` as the only client process; return its value or raise its error."""
    box: dict[str, Any] = {}

    def body() -> Gen[None]:
        try:
            box["value"] = yield from gen
        except Exception as exc:
            box["error"] = exc

    world.go(body(), name="client")
    outcome = world.run()
    assert outcome.ok, outcome.describe()
    if "error" in box:
        raise box["error"]
    return box["value"]


def world_with_image(**kwargs: Any) -> tuple[World, Any]:
    world = World.create(**kwargs)
    image = build_image(REF, [{"etc/a": b"a" * 3000}, {"etc/b": bytes(range(256)) * 40}])
    world.push(image)
    return world, image


def copy_blob(world: World, ctx: Context, desc: Descriptor) -> Gen[None]:
    """What remotes.fetch + content.Copy do: writer, fetch, write chunks, commit."""
    cw = yield from world.content.writer(ctx, ref=f"layer-{desc.digest}", desc=desc)
    try:
        reader = yield from world.registry.fetch(ctx, desc)
        while chunk := (yield from reader.read(ctx)):
            yield from cw.write(ctx, chunk)
        yield from cw.commit(ctx, desc.size, desc.digest)
    finally:
        yield from cw.close(ctx)


# --- references -------------------------------------------------------------------------------


def test_parse_reference_splits_locator_and_object() -> None:
    spec = parse_reference("localhost:5000/library/app:1.0@sha256:" + "a" * 64)
    assert spec.locator == "localhost:5000/library/app"
    assert spec.hostname == "localhost:5000"
    assert spec.repository == "library/app"
    assert spec.object == "1.0@sha256:" + "a" * 64
    assert spec.digest == "sha256:" + "a" * 64
    assert str(spec) == "localhost:5000/library/app:1.0@sha256:" + "a" * 64
    assert parse_reference("docker.io/x@sha256:" + "b" * 64).object == "@sha256:" + "b" * 64
    assert parse_reference("docker.io/library/x").object == ""


@pytest.mark.parametrize(
    ("ref", "message"), [("/x:1", "invalid reference"), ("", "hostname required")]
)
def test_parse_reference_errors(ref: str, message: str) -> None:
    with pytest.raises(GoError) as info:
        parse_reference(ref)
    assert str(info.value) == message


# --- resolve --------------------------------------------------------------------------------


def test_resolve_by_name_and_by_digest() -> None:
    world, image = world_with_image()
    ctx = world.context()
    assert drive(world, world.registry.resolve(ctx, REF)) == (REF, image.target)
    by_digest = f"registry.test/library/app@{image.target.digest}"
    assert drive(world, world.registry.resolve(ctx, by_digest)) == (by_digest, image.target)


def test_resolve_unknown_and_object_required() -> None:
    world, _ = world_with_image()
    ctx = world.context()
    with pytest.raises(NotFound) as info:
        drive(world, world.registry.resolve(ctx, "registry.test/library/app:2"))
    assert str(info.value) == "registry.test/library/app:2: not found"
    with pytest.raises(GoError) as go_info:
        drive(world, world.registry.resolve(ctx, "registry.test/library/app"))
    assert str(go_info.value) == "object required"


def test_put_rejects_bad_names_and_missing_targets() -> None:
    world, image = world_with_image()
    with pytest.raises(ValueError, match="give a tag"):
        world.registry.put("registry.test/app", image.target, image.blobs)
    with pytest.raises(ValueError, match="lack its target"):
        absent = Descriptor(image.target.media_type, digest_of(b"absent"), 6)
        world.registry.put("other.test/app:1", absent, {})


# --- fetching -------------------------------------------------------------------------------


def test_fetch_delivers_the_blob_in_chunks_at_the_bandwidth() -> None:
    network = Network(bandwidth=1000.0, chunk_size=1000)
    world, image = world_with_image(network=network)
    ctx = world.context()
    layer = image.single.layers[1]
    sizes: list[int] = []

    def client() -> Gen[tuple[bytes, float, float]]:
        reader = yield from world.registry.fetch(ctx, layer)
        opened = world.env.now
        parts = []
        while chunk := (yield from reader.read(ctx)):
            sizes.append(len(chunk))
            parts.append(chunk)
        return b"".join(parts), opened, world.env.now

    data, opened, ended = drive(world, client())
    assert data == image.blobs[layer.digest]
    assert all(size <= 1000 for size in sizes) and len(sizes) == -(-layer.size // 1000)
    assert ended - opened == pytest.approx(layer.size / 1000.0)
    assert [(r.digest, r.outcome) for r in world.registry.fetches] == [(layer.digest, "ok")]


def test_fetch_of_a_missing_blob_is_not_found() -> None:
    world, _ = world_with_image()
    missing = Descriptor(MEDIA_TYPE_OCI_LAYER_GZIP, digest_of(b"nope"), 4)
    with pytest.raises(NotFound) as info:
        drive(world, world.registry.fetch(world.context(), missing))
    assert str(info.value) == (
        f"could not fetch content descriptor {missing.digest} "
        f"({MEDIA_TYPE_OCI_LAYER_GZIP}) from remote: not found"
    )
    assert world.registry.fetch_count(missing.digest) == 1


def test_missing_manifest_names_the_manifests_endpoint() -> None:
    world, image = world_with_image()
    manifest = Descriptor(image.target.media_type, digest_of(b"m"), 1)
    with pytest.raises(NotFound) as info:
        drive(world, world.registry.fetch(world.context(), manifest, ref=REF))
    url = f"https://registry.test/v2/library/app/manifests/{manifest.digest}"
    assert str(info.value) == f"content at {url} not found: not found"


def test_seek_is_a_new_ranged_fetch() -> None:
    world, image = world_with_image()
    layer = image.single.layers[0]
    ctx = world.context()

    def client() -> Gen[bytes]:
        reader = yield from world.registry.fetch(ctx, layer)
        yield from reader.seek(ctx, 100)
        return (yield from reader.read_all(ctx))

    assert drive(world, client()) == image.blobs[layer.digest][100:]
    assert [r.offset for r in world.registry.fetches] == [0, 100]


def test_reading_on_a_cancelled_context_fails() -> None:
    world, image = world_with_image(network=Network(bandwidth=100.0, chunk_size=50))
    layer = image.single.layers[0]
    root = world.context()

    def client() -> Gen[None]:
        ctx, cancel = root.with_cancel()
        reader = yield from world.registry.fetch(ctx, layer)
        yield from reader.read(ctx)
        world.env.process(canceller(cancel))
        yield from reader.read(ctx)  # 0.5 s of transfer; cancelled at 0.1 s

    def canceller(cancel: Any) -> Gen[None]:
        yield world.env.timeout(0.1)
        cancel()

    with pytest.raises(Canceled):
        drive(world, client())


def test_closed_reader_is_misuse() -> None:
    world, image = world_with_image()
    ctx = world.context()

    def client() -> Gen[None]:
        reader = yield from world.registry.fetch(ctx, image.single.layers[0])
        reader.close()
        yield from reader.read(ctx)

    with pytest.raises(ValueError, match="closed"):
        drive(world, client())


# --- faults -----------------------------------------------------------------------------------


def test_fetch_error_is_injected_at_open_on_the_scripted_hit() -> None:
    world, image = world_with_image()
    layer = image.single.layers[0]
    world.env.faults = FaultPlan.scripted(
        Rule("fetch.error", key=layer.digest, hit=2, error=NotFound)
    )
    ctx = world.context()
    drive(world, world.registry.fetch(ctx, layer))  # the first fetch is fine
    with pytest.raises(NotFound) as info:
        drive(world, world.registry.fetch(ctx, layer))
    assert info.value.injected
    assert [r.outcome for r in world.registry.fetches] == ["ok", "NotFound"]
    assert world.env.faults.report().fired == (("fetch.error", layer.digest, 2),)


def test_fetch_error_defaults_to_a_503() -> None:
    world, image = world_with_image(faults=FaultPlan.scripted(Rule("fetch.error")))
    with pytest.raises(Unknown) as info:
        drive(world, world.registry.fetch(world.context(), image.single.layers[0]))
    assert "503 Service Unavailable" in str(info.value)
    assert info.value.injected


def test_truncated_fetch_fails_the_writer_size_check() -> None:
    world, image = world_with_image(faults=FaultPlan.scripted(Rule("fetch.truncate")))
    layer = image.single.layers[1]
    with pytest.raises(FailedPrecondition) as info:
        drive(world, copy_blob(world, world.context(), layer))
    assert "failed size validation" in str(info.value)
    assert f"{layer.size // 2} != {layer.size}" in str(info.value)
    assert world.registry.fetches[-1].outcome == "truncated"
    assert layer.digest not in world.db.namespace("default").content


def test_corrupt_fetch_fails_the_writer_digest_check() -> None:
    world, image = world_with_image(faults=FaultPlan.scripted(Rule("fetch.corrupt")))
    layer = image.single.layers[1]
    with pytest.raises(FailedPrecondition) as info:
        drive(world, copy_blob(world, world.context(), layer))
    assert "unexpected commit digest" in str(info.value)
    assert world.registry.fetches[-1].outcome == "corrupt"
    assert layer.digest not in world.db.namespace("default").content


def test_a_fault_free_copy_commits_the_blob() -> None:
    world, image = world_with_image()
    layer = image.single.layers[1]
    drive(world, copy_blob(world, world.context(), layer))
    assert world.content_store.read_blob(world.context(), layer) == image.blobs[layer.digest]
