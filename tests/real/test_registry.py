"""The loopback registry: the distribution API it serves and the faults it injects.

These need no root and no containerd: a plain HTTP client plays containerd's fetcher.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator

import pytest

from unpacksim.model.builders import build_image, build_index
from unpacksim.model.digest import digest_of
from unpacksim.real.registry import (
    Effect,
    Registry,
    RegistryError,
    RegistryFault,
    image_parts,
)

IMAGE = build_image("app:v1", [{"a": b"alpha" * 200}, {"b": bytes(range(256)) * 16}])


@pytest.fixture
def registry() -> Iterator[Registry]:
    with Registry(max_lifetime=60.0) as r:
        r.add_image("team/app", "v1", IMAGE)
        yield r


def request(
    registry: Registry, method: str, path: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    host, port = registry.host.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        try:
            body = resp.read()
        except http.client.IncompleteRead as exc:
            body = b"INCOMPLETE:" + exc.partial
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body
    finally:
        conn.close()


def layer_digest(index: int) -> str:
    return IMAGE.single.layers[index].digest


def test_base_endpoint_and_tag_resolution(registry: Registry) -> None:
    status, headers, body = request(registry, "GET", "/v2/")
    assert (status, body) == (200, b"{}")
    assert headers["docker-distribution-api-version"] == "registry/2.0"
    status, headers, body = request(registry, "HEAD", "/v2/team/app/manifests/v1")
    assert status == 200 and body == b""
    assert headers["docker-content-digest"] == IMAGE.target.digest
    assert headers["content-type"] == IMAGE.target.media_type
    assert int(headers["content-length"]) == IMAGE.target.size


def test_serves_manifests_and_blobs_by_digest(registry: Registry) -> None:
    status, _, body = request(registry, "GET", f"/v2/team/app/manifests/{IMAGE.target.digest}")
    assert status == 200 and digest_of(body) == IMAGE.target.digest
    status, _, body = request(registry, "GET", f"/v2/team/app/blobs/{layer_digest(1)}")
    assert status == 200 and digest_of(body) == layer_digest(1)


def test_unknown_names_are_404(registry: Registry) -> None:
    assert request(registry, "GET", "/v2/team/app/manifests/v2")[0] == 404
    assert request(registry, "GET", f"/v2/other/blobs/{layer_digest(0)}")[0] == 404
    # A blob is not a manifest: the manifests endpoint does not serve it.
    assert request(registry, "GET", f"/v2/team/app/manifests/{layer_digest(0)}")[0] == 404


def test_range_requests_resume(registry: Registry) -> None:
    data = IMAGE.blobs[layer_digest(1)]
    path = f"/v2/team/app/blobs/{layer_digest(1)}"
    status, headers, body = request(registry, "GET", path, {"Range": "bytes=100-"})
    assert status == 206 and body == data[100:]
    assert headers["content-range"] == f"bytes 100-{len(data) - 1}/{len(data)}"
    assert registry.requests()[-1].offset == 100


def test_error_fault_fires_on_the_chosen_hit_only(registry: Registry) -> None:
    registry.arm(RegistryFault(Effect.ERROR, digest=layer_digest(0), hits=(2,), status=503))
    path = f"/v2/team/app/blobs/{layer_digest(0)}"
    other = f"/v2/team/app/blobs/{layer_digest(1)}"
    assert request(registry, "GET", other)[0] == 200  # does not match: not counted
    assert request(registry, "GET", path)[0] == 200
    assert request(registry, "GET", path)[0] == 503
    assert request(registry, "GET", path)[0] == 200
    (rule,) = registry.fault_rules()
    assert (rule.site, rule.effect, rule.reached, rule.fired) == ("fetch", "error", 3, (2,))
    assert rule.params == {"endpoint": "blobs", "method": "GET", "digest": layer_digest(0),
                           "status": 503}  # fmt: skip


def test_truncate_sends_a_short_consistent_body(registry: Registry) -> None:
    registry.arm(RegistryFault(Effect.TRUNCATE, digest=layer_digest(1), keep=10))
    status, headers, body = request(registry, "GET", f"/v2/team/app/blobs/{layer_digest(1)}")
    assert status == 200 and headers["content-length"] == "10"
    assert body == IMAGE.blobs[layer_digest(1)][:10]


def test_drop_cuts_the_connection_mid_body(registry: Registry) -> None:
    registry.arm(RegistryFault(Effect.DROP, digest=layer_digest(1), keep=10))
    data = IMAGE.blobs[layer_digest(1)]
    _, headers, body = request(registry, "GET", f"/v2/team/app/blobs/{layer_digest(1)}")
    assert headers["content-length"] == str(len(data))
    assert body == b"INCOMPLETE:" + data[:10]


def test_corrupt_flips_one_byte_and_keeps_the_length(registry: Registry) -> None:
    registry.arm(RegistryFault(Effect.CORRUPT, digest=layer_digest(1), at=5))
    data = IMAGE.blobs[layer_digest(1)]
    _, _, body = request(registry, "GET", f"/v2/team/app/blobs/{layer_digest(1)}")
    assert len(body) == len(data) and body != data
    assert [i for i in range(len(data)) if body[i] != data[i]] == [5]


def test_delay_is_recorded_and_resolve_is_its_own_site(registry: Registry) -> None:
    registry.arm(
        RegistryFault(Effect.DELAY, endpoint="manifests", method="HEAD", seconds=0.01, hits=())
    )
    for _ in range(2):
        assert request(registry, "HEAD", "/v2/team/app/manifests/v1")[0] == 200
    (rule,) = registry.fault_rules()
    assert (rule.site, rule.fired) == ("resolve", (1, 2))
    assert [r.fault for r in registry.requests()] == ["delay", "delay"]


def test_arm_replaces_rules_and_resets_counts(registry: Registry) -> None:
    registry.arm(RegistryFault(Effect.ERROR, hits=()))
    assert request(registry, "GET", f"/v2/team/app/blobs/{layer_digest(0)}")[0] == 500
    registry.arm()
    assert registry.fault_rules() == ()
    assert request(registry, "GET", f"/v2/team/app/blobs/{layer_digest(0)}")[0] == 200


@pytest.mark.parametrize(
    "kwargs",
    [
        {"effect": "error"},
        {"effect": Effect.ERROR, "status": 200},
        {"effect": Effect.ERROR, "endpoint": "tags"},
        {"effect": Effect.ERROR, "method": "POST"},
        {"effect": Effect.ERROR, "hits": (0,)},
        {"effect": Effect.DELAY, "seconds": 600},
        {"effect": Effect.ERROR, "digest": "sha256:nothex"},
    ],
)
def test_bad_fault_rules_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        RegistryFault(**kwargs)  # type: ignore[arg-type]


def test_stop_closes_the_port_and_host_needs_a_running_registry() -> None:
    r = Registry().start()
    host, port = r.host.split(":")
    r.stop()
    r.stop()  # idempotent
    with pytest.raises(RegistryError, match="not serving"):
        _ = r.host
    with pytest.raises(ConnectionRefusedError):
        http.client.HTTPConnection(host, int(port), timeout=5).request("GET", "/v2/")


def test_watchdog_stops_a_forgotten_registry() -> None:
    r = Registry(max_lifetime=0.05).start()
    assert r._thread is not None
    r._thread.join(timeout=10)  # serve_forever returns once the watchdog shut it down
    assert not r._thread.is_alive()
    r.stop()


def test_image_parts_walks_an_index() -> None:
    index = build_index("multi:v1", {"linux/amd64": [{"a": b"1"}], "linux/arm64": [{"b": b"2"}]})
    parts = image_parts(index)
    assert parts.indexes == (index.target,)
    assert len(parts.manifests) == 2 and len(parts.configs) == 2 and len(parts.layers) == 2
    doc = json.loads(index.blobs[index.target.digest])
    assert [m.digest for m in parts.manifests] == [m["digest"] for m in doc["manifests"]]


def test_image_parts_refuses_a_missing_blob() -> None:
    broken = build_image("app:v1", [{"a": b"1"}])
    blobs = {k: v for k, v in broken.blobs.items() if k != broken.single.layers[0].digest}
    with pytest.raises(RegistryError, match="missing"):
        image_parts(type(broken)(broken.name, broken.target, blobs, broken.platforms))
