"""The image store (``metadata/images.go``), OCI documents, and ``images.Children``."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import pytest

from unpacksim.model.clock import ManualClock
from unpacksim.model.context import Ctx
from unpacksim.model.db import DB
from unpacksim.model.digest import digest_of
from unpacksim.model.errdefs import AlreadyExists, InvalidArgument, NotFound, Unknown
from unpacksim.model.images import (
    Image,
    ImageConfig,
    ImageStore,
    Index,
    Manifest,
    children,
    is_known_config,
)
from unpacksim.model.oci import (
    MEDIA_TYPE_DOCKER_MANIFEST,
    MEDIA_TYPE_OCI_CONFIG,
    MEDIA_TYPE_OCI_INDEX,
    MEDIA_TYPE_OCI_LAYER_GZIP,
    MEDIA_TYPE_OCI_MANIFEST,
    Descriptor,
    Platform,
)

CTX = Ctx("ns1")
TARGET = Descriptor(MEDIA_TYPE_OCI_MANIFEST, digest_of(b"manifest"), 8)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(7.0)


@pytest.fixture
def store(clock: ManualClock) -> ImageStore:
    return ImageStore(DB(clock))


def test_create_get_update_delete(store: ImageStore, clock: ManualClock) -> None:
    created = store.create(CTX, Image("docker.io/library/a:1", TARGET, {"k": "v", "e": ""}))
    assert (created.created_at, created.updated_at, created.labels) == (7.0, 7.0, {"k": "v"})
    assert store.get(CTX, "docker.io/library/a:1") == created
    clock.advance(3)
    other = Descriptor(MEDIA_TYPE_OCI_INDEX, digest_of(b"index"), 5)
    updated = store.update(CTX, Image("docker.io/library/a:1", other, {"n": "1"}))
    assert (updated.target, updated.labels) == (other, {"n": "1"})
    assert (updated.created_at, updated.updated_at) == (7.0, 10.0)
    dirty = store.db.dirty
    store.delete(CTX, "docker.io/library/a:1")
    assert store.db.dirty == dirty + 1
    for call in (
        lambda: store.get(CTX, "docker.io/library/a:1"),
        lambda: store.delete(CTX, "docker.io/library/a:1"),
        lambda: store.update(CTX, Image("docker.io/library/a:1", TARGET)),
    ):
        with pytest.raises(NotFound) as info:
            call()
        assert str(info.value) == 'image "docker.io/library/a:1": not found'


def test_the_record_keeps_only_the_target_fields_bolt_stores(store: ImageStore) -> None:
    # metadata/images.go writeImage stores digest, media type, size and annotations; Create
    # and Update return the image they were given, Get what readImage reads back.
    amd64 = Platform("linux", "amd64")
    target = replace(TARGET, platform=amd64, annotations={"a": "1", "e": ""})
    created = store.create(CTX, Image("a", target))
    assert (created.target.platform, created.target.annotations) == (amd64, {"a": "1"})
    got = store.get(CTX, "a")
    assert (got.target.platform, got.target.annotations) == (None, {"a": "1"})
    assert got.target == replace(TARGET, platform=None)
    updated = store.update(CTX, Image("a", target), "target")
    assert updated.target.platform == amd64
    assert store.get(CTX, "a").target.platform is None
    kept = store.update(CTX, Image("a", target, {"k": "v"}), "labels.k")
    assert (kept.target.platform, kept.labels) == (None, {"k": "v"})


def test_label_size_is_counted_in_bytes(store: ImageStore) -> None:
    # labels.Validate: len(k)+len(v) in bytes; "é" is two bytes in UTF-8.
    with pytest.raises(InvalidArgument) as info:
        store.create(CTX, Image("a", TARGET, {"ké": "é" * 2047}))
    assert str(info.value) == (
        "image.Labels: label key and value greater than maximum size (4096 bytes), "
        "key: ké: invalid argument"
    )
    store.create(CTX, Image("a", TARGET, {"k": "é" * 2047}))  # 4095 bytes


def test_create_twice_is_already_exists(store: ImageStore) -> None:
    store.create(CTX, Image("a", TARGET))
    with pytest.raises(AlreadyExists) as info:
        store.create(CTX, Image("a", TARGET))
    assert str(info.value) == 'image "a": already exists'
    store.create(Ctx("ns2"), Image("a", TARGET))  # namespaces are separate


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (Image("", TARGET), "image name must not be empty"),
        (Image("a", replace(TARGET, size=0)), "Target.Size must be greater than zero"),
        (Image("a", replace(TARGET, media_type="")), "Target.MediaType must be set"),
        (
            Image("a", TARGET, {"k" * 20: "v" * 4096}),
            "label key and value greater than maximum size (4096 bytes), key: kkkkkkkkkk",
        ),
    ],
)
def test_invalid_images_are_invalid_argument(store: ImageStore, image: Image, message: str) -> None:
    with pytest.raises(InvalidArgument, match=re.escape(message)):
        store.create(CTX, image)
    assert store.list(CTX) == []


def test_update_field_paths(store: ImageStore) -> None:
    annotated = replace(TARGET, annotations={"a1": "x", "a2": "y"})
    store.create(CTX, Image("a", annotated, {"k1": "1", "k2": "2"}))
    change = Image("a", replace(TARGET, annotations={"a1": "new"}), {"k1": "one", "k3": "3"})
    updated = store.update(CTX, change, "labels.k1", "labels.k2", "annotations.a1")
    assert updated.labels == {"k1": "one"}
    assert updated.target.annotations == {"a1": "new", "a2": "y"}
    with pytest.raises(InvalidArgument) as info:
        store.update(CTX, change, "name")
    assert str(info.value) == 'cannot update "name" field on image "a": invalid argument'
    with pytest.raises(InvalidArgument, match="image name is required for update"):
        store.update(CTX, Image("", TARGET))
    bad = Image("a", replace(TARGET, size=0))
    with pytest.raises(InvalidArgument, match=r"Target\.Size"):
        store.update(CTX, bad, "target")
    assert store.get(CTX, "a").target.size == TARGET.size  # nothing changed


def test_list_filters(store: ImageStore) -> None:
    index = Descriptor(MEDIA_TYPE_OCI_INDEX, digest_of(b"i"), 1, {"org.x": "y"})
    store.create(CTX, Image("b", TARGET, {"env": "prod"}))
    store.create(CTX, Image("a", index))
    names = {
        (): ["a", "b"],
        ("name==b",): ["b"],
        (f"target.mediatype=={MEDIA_TYPE_OCI_INDEX}",): ["a"],
        (f"target.digest=={TARGET.digest}",): ["b"],
        ("labels.env",): ["b"],
        ('annotations."org.x"==y',): ["a"],
        ("name==a", "labels.env==prod"): ["a", "b"],
    }
    for filters, expected in names.items():
        assert [i.name for i in store.list(CTX, *filters)] == expected, filters
    with pytest.raises(InvalidArgument, match=r"invalid argument: invalid argument$"):
        store.list(CTX, "name==a,")


def test_writes_report_mutations(store: ImageStore) -> None:
    seen: list[bool] = []
    store.db.listeners.append(seen.append)
    store.create(CTX, Image("a", TARGET))
    store.update(CTX, Image("a", TARGET, {"x": "1"}), "labels.x")
    store.delete(CTX, "a")
    assert seen == [False, False, True]


# --- documents ----------------------------------------------------------------------------


LAYER = Descriptor(MEDIA_TYPE_OCI_LAYER_GZIP, digest_of(b"layer"), 5, {"a": "b"})
CONFIG = Descriptor(MEDIA_TYPE_OCI_CONFIG, digest_of(b"config"), 6)


def test_manifest_json_is_compact_ordered_and_round_trips() -> None:
    manifest = Manifest(CONFIG, (LAYER, LAYER))
    data = manifest.to_json()
    assert data.startswith(b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest')
    assert Manifest.from_json(data) == manifest
    assert Manifest.from_json(data).layers[0].annotations == {"a": "b"}
    assert manifest.to_json() == Manifest(CONFIG, (LAYER, LAYER)).to_json()


def test_index_and_config_round_trip() -> None:
    man = Descriptor(
        MEDIA_TYPE_OCI_MANIFEST, digest_of(b"m"), 1, platform=Platform("linux", "arm64", "v8")
    )
    index = Index((man,))
    assert Index.from_json(index.to_json()) == index
    assert Index.from_json(index.to_json()).manifests[0].platform == man.platform
    config = ImageConfig((LAYER.digest,), "arm64", "linux", "v8", {"l": "1"})
    doc = json.loads(config.to_json())
    assert doc["rootfs"] == {"type": "layers", "diff_ids": [LAYER.digest]}
    assert list(doc) == ["architecture", "variant", "os", "config", "rootfs"]
    assert ImageConfig.from_json(config.to_json()) == config
    assert config.platform == Platform("linux", "arm64", "v8")


def test_children_mirror_images_children() -> None:
    manifest = Manifest(CONFIG, (LAYER,))
    desc = Descriptor(MEDIA_TYPE_OCI_MANIFEST, digest_of(manifest.to_json()), 1)
    assert children(desc, manifest.to_json()) == [CONFIG, LAYER]
    docker = replace(desc, media_type=MEDIA_TYPE_DOCKER_MANIFEST)
    assert children(docker, manifest.to_json()) == [CONFIG, LAYER]
    index = Index((desc,))
    index_desc = Descriptor(MEDIA_TYPE_OCI_INDEX, digest_of(index.to_json()), 1)
    assert children(index_desc, index.to_json()) == [desc]
    assert children(LAYER, b"not json") == []
    assert children(CONFIG, b"not json") == []
    assert children(replace(LAYER, media_type="application/x-unknown"), b"") == []
    with pytest.raises(Unknown, match="failed to unmarshal manifest"):
        children(desc, b"{broken")
    assert is_known_config(MEDIA_TYPE_OCI_CONFIG) and not is_known_config(LAYER.media_type)
    # images/mediatypes.go IsKnownConfig also lists both containerd checkpoint types.
    assert is_known_config("application/vnd.containerd.container.criu.checkpoint.criu.tar")
    assert is_known_config("application/vnd.containerd.container.checkpoint.config.v1+proto")
