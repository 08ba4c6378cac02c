"""The pipeline's small parts on their own: handlers, Dispatch, labels, platforms, records."""

from __future__ import annotations

import json
from collections.abc import Generator
from typing import Any

import pytest

from unpacksim.model.builders import build_image, build_index
from unpacksim.model.digest import digest_of
from unpacksim.model.errdefs import NotFound
from unpacksim.model.oci import (
    MEDIA_TYPE_DOCKER_CONFIG,
    MEDIA_TYPE_OCI_CONFIG,
    MEDIA_TYPE_OCI_INDEX,
    MEDIA_TYPE_OCI_LAYER_GZIP,
    MEDIA_TYPE_OCI_MANIFEST,
    Descriptor,
    Platform,
)
from unpacksim.sim.context import Context, background
from unpacksim.sim.env import Environment
from unpacksim.unpack.drive import Intercept, intercept, pull_images, start_pull, world_for
from unpacksim.unpack.eras import DiscardMode, preset
from unpacksim.unpack.expect import ExpectedPull, expected_state
from unpacksim.unpack.fetch import make_ref_key, parse_reference
from unpacksim.unpack.goerrors import ErrSkipDesc, ErrStopHandler, GoError, wrap
from unpacksim.unpack.handlers import (
    HandlerProcess,
    child_gc_labels,
    child_gc_labels_filter_layers,
    child_labels,
    children,
    dispatch,
    filter_platforms,
    handlers,
    limit_manifests,
)
from unpacksim.unpack.platforms import normalize, only
from unpacksim.unpack.results import PullOptions, PullOptionsError

D = "sha256:" + "1" * 64


def _desc(media_type: str, n: int = 1, platform: Platform | None = None) -> Descriptor:
    return Descriptor(media_type, "sha256:" + str(n) * 64, 10, platform=platform)


def _run(gen: Generator[Any, Any, Any], env: Environment | None = None) -> Any:
    env = env if env is not None else Environment()
    out: list[Any] = []

    def body() -> Generator[Any, Any, None]:
        out.append((yield from gen))

    env.process(body(), name="test")
    env.run()
    return out[0]


# --- images.Handlers and Dispatch ----------------------------------------------------------


def _returns(found: list[Descriptor]) -> Any:
    def run(ctx: Context, desc: Descriptor) -> HandlerProcess:
        return found
        yield

    return run


def _raises(exc: BaseException) -> Any:
    def run(ctx: Context, desc: Descriptor) -> HandlerProcess:
        raise exc
        yield

    return run


def test_handlers_concatenate_children_and_stop_on_err_stop_handler() -> None:
    a, b = _desc(MEDIA_TYPE_OCI_CONFIG, 2), _desc(MEDIA_TYPE_OCI_CONFIG, 3)
    ctx = background(Environment())
    chain = handlers(_returns([a]), _returns([b]))
    assert _run(chain(ctx, _desc(MEDIA_TYPE_OCI_MANIFEST))) == [a, b]
    stopped = handlers(_returns([a]), _raises(ErrStopHandler()), _returns([b]))
    assert _run(stopped(ctx, _desc(MEDIA_TYPE_OCI_MANIFEST))) == [a]


def test_dispatch_skips_the_children_of_err_skip_desc_and_returns_the_first_error() -> None:
    env = Environment()
    ctx = background(env)
    root, kid, grandkid = (_desc(MEDIA_TYPE_OCI_MANIFEST, i) for i in (1, 2, 3))
    seen: list[str] = []

    def handler(ctx: Context, desc: Descriptor) -> HandlerProcess:
        seen.append(desc.digest)
        yield env.timeout(0)
        if desc == kid:
            raise ErrSkipDesc()
        return [kid] if desc == root else [grandkid]

    out: list[Any] = []

    def body() -> Generator[Any, Any, None]:
        yield from dispatch(ctx, handler, None, [root])
        out.append("ok")

    env.process(body(), name="dispatch")
    env.run()
    assert out == ["ok"] and seen == [root.digest, kid.digest]

    env2 = Environment()

    def failing(ctx: Context, desc: Descriptor) -> HandlerProcess:
        yield env2.timeout(0)
        raise NotFound("gone")

    with pytest.raises(NotFound, match="gone"):
        _run(dispatch(background(env2), failing, None, [root]), env2)


# --- children and child labels ---------------------------------------------------------------


def test_children_of_manifests_indexes_and_others() -> None:
    image = build_image("registry.test/a:1", [{"a": b"1"}]).single
    blob = image.manifest_doc.to_json()
    assert children(image.manifest, blob) == [image.config, *image.layers]
    assert children(image.config, b"not json") == []
    with pytest.raises(GoError):
        children(image.manifest, b"{oops")
    index = build_index("registry.test/i:1", {"linux/amd64": [{"a": b"1"}]})
    found = children(index.target, index.blobs[index.target.digest])
    assert [d.digest for d in found] == [index.platform("linux/amd64").manifest.digest]


def test_child_label_keys_seed_and_typed() -> None:
    kids = [
        _desc(MEDIA_TYPE_OCI_CONFIG, 1),
        _desc(MEDIA_TYPE_OCI_LAYER_GZIP, 2),
        _desc(MEDIA_TYPE_OCI_LAYER_GZIP, 2),
        _desc("application/x-unknown", 3),
        _desc("application/x-unknown", 4),
    ]
    assert list(child_labels(kids, None)) == [f"containerd.io/gc.ref.content.{i}" for i in range(5)]
    assert list(child_labels(kids, child_gc_labels)) == [
        "containerd.io/gc.ref.content.config",
        "containerd.io/gc.ref.content.l.0",
        "containerd.io/gc.ref.content.l.1",
        "containerd.io/gc.ref.content.0",
        "containerd.io/gc.ref.content.1",
    ]
    assert list(child_labels(kids[:3], child_gc_labels_filter_layers)) == [
        "containerd.io/gc.ref.content.config"
    ]
    manifests = [_desc(MEDIA_TYPE_OCI_MANIFEST, 5), _desc(MEDIA_TYPE_OCI_MANIFEST, 6)]
    assert list(child_labels(manifests, child_gc_labels)) == [
        "containerd.io/gc.ref.content.m.0",
        "containerd.io/gc.ref.content.m.1",
    ]


def test_make_ref_key_by_kind() -> None:
    assert make_ref_key(_desc(MEDIA_TYPE_OCI_INDEX)) == f"index-{D}"
    assert make_ref_key(_desc(MEDIA_TYPE_DOCKER_CONFIG)) == f"config-{D}"
    assert make_ref_key(_desc("application/octet-stream")) == f"unknown-{D}"


def test_parse_reference_needs_a_hostname() -> None:
    with pytest.raises(GoError):
        parse_reference("/app:1")


# --- platforms ---------------------------------------------------------------------------------


def test_normalize_and_only() -> None:
    assert normalize(Platform("Linux", "x86_64")) == Platform("linux", "amd64")
    assert normalize(Platform("linux", "aarch64", "v8")) == Platform("linux", "arm64")
    assert normalize(Platform("linux", "arm")) == Platform("linux", "arm", "v7")
    arm7 = only(Platform("linux", "arm", "v7"))
    assert arm7.match(Platform("linux", "arm", "v6")) and not arm7.match(
        Platform("linux", "arm", "v8")
    )
    assert arm7.less(Platform("linux", "arm", "v7"), Platform("linux", "arm", "v6"))


def test_filter_and_limit_manifests_order_by_preference() -> None:
    v6 = _desc(MEDIA_TYPE_OCI_MANIFEST, 1, Platform("linux", "arm", "v6"))
    v7 = _desc(MEDIA_TYPE_OCI_MANIFEST, 2, Platform("linux", "arm", "v7"))
    plain = _desc(MEDIA_TYPE_OCI_MANIFEST, 3)
    amd = _desc(MEDIA_TYPE_OCI_MANIFEST, 4, Platform("linux", "amd64"))
    matcher = only(Platform("linux", "arm", "v7"))
    ctx = background(Environment())
    index = _desc(MEDIA_TYPE_OCI_INDEX, 9)
    kids = filter_platforms(_returns([plain, v6, amd, v7]), matcher)
    assert _run(kids(ctx, index)) == [plain, v6, v7]
    assert _run(filter_platforms(_returns([amd]), None)(ctx, index)) == [amd]
    assert _run(limit_manifests(kids, matcher, 0)(ctx, index)) == [v7, v6, plain]
    assert _run(limit_manifests(kids, matcher, 1)(ctx, index)) == [v7]
    manifest = _desc(MEDIA_TYPE_OCI_MANIFEST, 8)
    assert _run(limit_manifests(kids, matcher, 1)(ctx, manifest)) == [plain, v6, v7]


# --- errors, options, records -------------------------------------------------------------------


def test_wrap_keeps_the_class_and_leaves_bugs_alone() -> None:
    err = wrap(NotFound("x", injected=True), "outer")
    assert isinstance(err, NotFound) and err.injected and str(err) == "outer: x: not found"
    assert str(wrap(GoError("inner"), "outer")) == "outer: inner"
    bug = KeyError("k")
    assert wrap(bug, "outer") is bug
    assert str(ErrSkipDesc()) == "skip descriptor" and str(ErrStopHandler()) == "stop handler"


def test_pull_options_reject_misuse() -> None:
    with pytest.raises(PullOptionsError, match="snapshotter"):
        PullOptions(snapshotter="")
    with pytest.raises(PullOptionsError, match="max_concurrent_downloads"):
        PullOptions(max_concurrent_downloads=-1)
    opts = PullOptions(labels={"a": "b"})
    with pytest.raises(TypeError):
        opts.labels["c"] = "d"  # type: ignore[index]


def test_pull_results_have_a_json_form() -> None:
    image = build_image("registry.test/json:1", [{"a": b"1"}])
    world = world_for("seed")
    world.push(image)
    (result,), _ = pull_images(world, "seed", [image.name])
    data = json.loads(json.dumps(result.to_json()))
    assert data["ok"] and data["error_class"] == "ok" and data["implementation"] == "seed"
    (unpack,) = data["unpacks"]
    assert unpack["committed"] == list(image.single.chain_ids)
    assert unpack["prepared"][0][0] == image.single.chain_ids[0]


def test_explicit_discard_mode_wins() -> None:
    era = preset("seed").but(discard_mode=DiscardMode.SEED_STRIP_LABELS)
    assert era.discard_mechanism is DiscardMode.SEED_STRIP_LABELS


# --- the driving helpers -----------------------------------------------------------------------


def test_intercept_passes_other_attributes_and_rejects_unknown_parts() -> None:
    world = world_for("seed")
    wrapper = intercept(world, "registry")
    assert isinstance(wrapper, Intercept) and wrapper.images is world.registry.target.images  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="cannot intercept 'gc'"):
        intercept(world, "gc")


def test_start_pull_can_be_delayed() -> None:
    image = build_image("registry.test/late:1", [{"a": b"1"}])
    world = world_for("seed")
    world.push(image)
    handle = start_pull(world, "seed", image.name, delay=5.0)
    world.run()
    assert handle.result is not None and handle.result.started == 5.0


def test_expected_state_needs_the_platform() -> None:
    image = build_image("registry.test/x:1", [{"a": b"1"}])
    with pytest.raises(ValueError, match="no platform linux/arm64"):
        expected_state([ExpectedPull(image, platform=Platform("linux", "arm64"))], preset("seed"))


def test_digest_helper_is_the_sha256_of_the_bytes() -> None:
    assert digest_of(b"") == (
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )


def test_config_diff_ids_reads_like_json_unmarshal() -> None:
    from unpacksim.unpack.unpacker import config_diff_ids

    assert config_diff_ids(b"{}") == [], "a missing rootfs is an empty list, as in Go"
    assert config_diff_ids(b'{"rootfs": {"diff_ids": ["' + D.encode() + b'"]}}') == [D]
    for bad in (b"{oops", b"[1]", b'{"rootfs": 3}', b'{"rootfs": {"diff_ids": 3}}'):
        with pytest.raises(GoError, match=r"^unmarshal image config: "):
            config_diff_ids(bad)
