"""Deterministic images from real tar layers."""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
import tarfile

import pytest

from unpacksim.model.builders import (
    BuiltImage,
    build_image,
    build_index,
    build_layer,
    make_tar,
    write_image,
)
from unpacksim.model.content import ContentStore
from unpacksim.model.context import Ctx
from unpacksim.model.db import DB
from unpacksim.model.digest import chain_ids, digest_of
from unpacksim.model.images import ImageConfig, Index, Manifest, children
from unpacksim.model.labels import GC_REF_CONTENT
from unpacksim.model.oci import (
    MEDIA_TYPE_DOCKER_CONFIG,
    MEDIA_TYPE_DOCKER_LAYER_GZIP,
    MEDIA_TYPE_DOCKER_MANIFEST,
    MEDIA_TYPE_DOCKER_MANIFEST_LIST,
    MEDIA_TYPE_OCI_INDEX,
    MEDIA_TYPE_OCI_LAYER,
    MEDIA_TYPE_OCI_LAYER_GZIP,
    MEDIA_TYPE_OCI_MANIFEST,
    Descriptor,
    Platform,
)

BASE = {"etc/os-release": b"ID=sim\n", "bin/sh": b"#!sim\n"}
APP = {"app/main": b"print('hi')\n", "app/data/": b""}


def test_the_diff_id_is_the_digest_of_the_real_uncompressed_tar() -> None:
    layer = build_layer(BASE)
    tar = gzip.decompress(layer.blob)
    assert tar == layer.tar
    assert layer.diff_id == digest_of(tar)
    assert layer.digest == digest_of(layer.blob) != layer.diff_id
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        members = archive.getmembers()
        names = [m.name for m in members]
        contents = {m.name: archive.extractfile(m).read() for m in members if m.isfile()}  # type: ignore[union-attr]
    assert names == ["bin", "bin/sh", "etc", "etc/os-release"]
    assert contents == BASE
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname) for m in members} == {(0, 0, 0, "", "")}
    assert {m.name: m.mode for m in members} == {
        "bin": 0o755,
        "bin/sh": 0o644,
        "etc": 0o755,
        "etc/os-release": 0o644,
    }


def test_same_input_gives_same_bytes() -> None:
    first = build_image("x:1", [BASE, APP])
    again = build_image("x:1", [dict(reversed(list(BASE.items()))), APP])
    assert first.blobs == again.blobs
    assert first.target == again.target
    assert gzip.decompress(build_layer(BASE).blob) == make_tar(BASE)


def test_bytes_do_not_depend_on_the_hash_seed() -> None:
    code = (
        "from unpacksim.model.builders import build_index\n"
        "img = build_index('x', {'linux/amd64': [{'a/b': b'1', 'c': b'2'}], 'linux/arm64': []})\n"
        "print(img.target.digest, sorted(img.blobs))\n"
    )
    outputs = set()
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        outputs.add(done.stdout)
    assert len(outputs) == 1


def test_config_and_manifest_describe_the_layers() -> None:
    image = build_image("x:1", [BASE, APP], platform=Platform("linux", "arm64", "v8"))
    p = image.single
    config = ImageConfig.from_json(image.blobs[p.config.digest])
    assert config.diff_ids == p.diff_ids == (build_layer(BASE).diff_id, build_layer(APP).diff_id)
    assert config.platform == Platform("linux", "arm64", "v8")
    assert p.chain_ids == tuple(chain_ids(p.diff_ids))
    manifest = Manifest.from_json(image.blobs[p.manifest.digest])
    assert manifest == p.manifest_doc
    assert manifest.config == p.config and manifest.layers == p.layers
    assert image.target == p.manifest and image.target.media_type == MEDIA_TYPE_OCI_MANIFEST
    assert [d.media_type for d in p.layers] == [MEDIA_TYPE_OCI_LAYER_GZIP] * 2
    for digest, blob in image.blobs.items():
        assert digest_of(blob) == digest
    assert type(image.blobs) is dict


def test_an_index_has_one_manifest_per_platform() -> None:
    image = build_index(
        "x:1", {"linux/amd64": [BASE], Platform("linux", "arm64", "v8"): [BASE, APP]}
    )
    assert image.target.media_type == MEDIA_TYPE_OCI_INDEX
    index = Index.from_json(image.blobs[image.target.digest])
    assert [str(m.platform) for m in index.manifests] == ["linux/amd64", "linux/arm64/v8"]
    assert [m.digest for m in index.manifests] == [
        p.manifest.digest for p in image.platforms.values()
    ]
    arm = image.platform("linux/arm64/v8")
    assert arm.platform == Platform("linux", "arm64", "v8") and len(arm.layers) == 2
    # The base layer is shared between the platforms: stored once.
    assert image.platform("linux/amd64").layers[0] == arm.layers[0]
    assert len(image.blobs) == 1 + 2 * 2 + 2
    with pytest.raises(ValueError, match="2 platforms"):
        image.single  # noqa: B018
    with pytest.raises(KeyError, match="linux/s390x"):
        image.platform("linux/s390x")


def test_docker_media_types() -> None:
    image = build_index("x:1", {"linux/amd64": [BASE]}, docker=True)
    p = image.single
    assert image.target.media_type == MEDIA_TYPE_DOCKER_MANIFEST_LIST
    assert p.manifest.media_type == MEDIA_TYPE_DOCKER_MANIFEST
    assert p.config.media_type == MEDIA_TYPE_DOCKER_CONFIG
    assert p.layers[0].media_type == MEDIA_TYPE_DOCKER_LAYER_GZIP


def test_shared_base_layers_and_duplicate_layers() -> None:
    base = build_layer(BASE)
    one = build_image("one:1", [base, APP])
    two = build_image("two:1", [base, {"other": b"2"}])
    assert one.single.layers[0] == two.single.layers[0]
    assert one.single.chain_ids[0] == two.single.chain_ids[0]
    assert one.single.chain_ids[1] != two.single.chain_ids[1]
    dup = build_image("dup:1", [base, base])
    assert dup.single.layers[0] == dup.single.layers[1]
    assert dup.single.chain_ids[0] != dup.single.chain_ids[1]
    assert list(dup.blobs).count(base.digest) == 1 and len(dup.blobs) == 3


def test_uncompressed_layers_and_annotations() -> None:
    layer = build_layer(APP, compressed=False, annotations={"containerd.io/snapshot/x": "y"})
    assert layer.blob == layer.tar and layer.digest == layer.diff_id
    desc = layer.descriptor()
    assert desc.media_type == MEDIA_TYPE_OCI_LAYER
    assert desc.annotations == {"containerd.io/snapshot/x": "y"}


def test_config_labels_make_configs_differ() -> None:
    plain = build_image("a", [BASE])
    labelled = build_image("a", [BASE], config_labels={"v": "2"})
    assert plain.single.config.digest != labelled.single.config.digest
    assert json.loads(labelled.blobs[labelled.single.config.digest])["config"] == {
        "Labels": {"v": "2"}
    }


@pytest.mark.parametrize(
    ("files", "error"),
    [
        ({"/": b""}, "does not name a file"),
        ({"../x": b"1"}, "does not name a file"),
        ({"": b"1"}, "does not name a file"),
        ({"a": b"1", "/a": b"2"}, "given twice"),
        ({"d/": b"x"}, "has content"),
    ],
)
def test_bad_layer_specs_are_refused(files: dict[str, bytes], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        make_tar(files)


def test_write_image_into_a_content_store() -> None:
    image: BuiltImage = build_index("x:1", {"linux/amd64": [BASE, APP], "linux/arm64": [BASE]})
    store = ContentStore(DB())
    ctx = Ctx("ns")
    write_image(ctx, store, image, gc_labels=True)
    seen: list[str] = []
    store.walk(ctx, lambda info: seen.append(info.digest))
    assert seen == sorted(image.blobs)
    for digest, blob in image.blobs.items():
        assert store.read_blob(ctx, Descriptor("any", digest, len(blob))) == blob
    amd = image.platform("linux/amd64")
    labels = store.info(ctx, amd.manifest.digest).labels
    assert labels == {
        f"{GC_REF_CONTENT}.0": amd.config.digest,
        f"{GC_REF_CONTENT}.1": amd.layers[0].digest,
        f"{GC_REF_CONTENT}.2": amd.layers[1].digest,
    }
    kids = children(amd.manifest, store.read_blob(ctx, amd.manifest))
    assert kids == [amd.config, *amd.layers]
    assert len(store.info(ctx, image.target.digest).labels) == 2
    write_image(ctx, store, image)  # again: everything exists, nothing fails
