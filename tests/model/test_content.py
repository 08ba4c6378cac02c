"""The metadata content store and its backend: errors, leasing, atomicity, GC hooks."""

from __future__ import annotations

import pytest

from unpacksim.model.clock import ManualClock
from unpacksim.model.content import (
    INGEST_EXPIRY,
    ContentStore,
    Info,
    Status,
    copy_content,
    write_blob,
)
from unpacksim.model.context import Ctx, ModelContext
from unpacksim.model.db import DB
from unpacksim.model.digest import digest_of
from unpacksim.model.errdefs import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
    Unknown,
)
from unpacksim.model.leases import LeaseManager
from unpacksim.model.oci import Descriptor

CTX = Ctx("ns1")
DATA = b"some layer bytes"
DIGEST = digest_of(DATA)
DESC = Descriptor("application/octet-stream", DIGEST, len(DATA))


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(1000.0)


@pytest.fixture
def db(clock: ManualClock) -> DB:
    return DB(clock)


@pytest.fixture
def store(db: DB) -> ContentStore:
    return ContentStore(db)


@pytest.fixture
def leases(db: DB) -> LeaseManager:
    return LeaseManager(db)


def test_the_backend_is_registered_for_gc_and_keeps_db_time(db: DB, clock: ManualClock) -> None:
    store = ContentStore(db)
    assert db.content_backend is store.backend
    assert store.backend.clock is clock


# --- bad input -------------------------------------------------------------------------------


def test_empty_ref_is_invalid_argument(store: ContentStore) -> None:
    with pytest.raises(InvalidArgument) as info:
        store.writer(CTX, ref="")
    assert str(info.value) == "ref must not be empty: invalid argument"


def test_no_namespace_is_failed_precondition(store: ContentStore) -> None:
    with pytest.raises(FailedPrecondition, match="namespace is required"):
        store.info(Ctx(""), DIGEST)


def test_unknown_update_path_names_the_path_and_the_digest(store: ContentStore) -> None:
    write_blob(CTX, store, "r", DATA, DESC)
    with pytest.raises(InvalidArgument) as info:
        store.update(CTX, Info(DIGEST), "labels.a", "createdat")
    assert str(info.value) == (
        f'cannot update "createdat" field on content info "{DIGEST}": invalid argument'
    )


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ("sha256:abc", "invalid checksum digest length"),
        ("nonsense", "invalid checksum digest format"),
        ("md5:d41d8cd98f00b204e9800998ecf8427e", "unsupported digest algorithm"),
        ("sha256:" + "G" * 64, "invalid checksum digest format"),
    ],
)
def test_malformed_digests_are_invalid_argument(store: ContentStore, bad: str, reason: str) -> None:
    # contentserver.go: Info and Update quote the digest; Delete reports go-digest's error.
    with pytest.raises(InvalidArgument) as info:
        store.info(CTX, bad)
    assert str(info.value) == f'"{bad}" failed validation: invalid argument'
    with pytest.raises(InvalidArgument) as info:
        store.update(CTX, Info(bad))
    assert str(info.value) == f'"{bad}" failed validation: invalid argument'
    with pytest.raises(InvalidArgument, match=reason):
        store.delete(CTX, bad)


def test_a_malformed_digest_wins_over_a_missing_namespace(store: ContentStore) -> None:
    # contentserver.go validates the digest before metadata/content.go calls
    # namespaces.NamespaceRequired, so a client sees InvalidArgument first.
    no_ns = Ctx("")
    for call in (
        lambda: store.info(no_ns, "nonsense"),
        lambda: store.update(no_ns, Info("nonsense")),
        lambda: store.delete(no_ns, "nonsense"),
    ):
        with pytest.raises(InvalidArgument):
            call()
    with pytest.raises(FailedPrecondition, match="namespace is required"):
        store.delete(no_ns, DIGEST)


def test_bad_filters_are_invalid_argument(store: ContentStore) -> None:
    with pytest.raises(InvalidArgument, match=r"\[labels\. >\|/\|< x\]"):
        store.walk(CTX, lambda info: None, "labels./x")
    with pytest.raises(InvalidArgument, match="expected value or quoted"):
        store.list_statuses(CTX, "ref==")


def test_size_and_total_given_twice_is_misuse(store: ContentStore) -> None:
    with pytest.raises(ValueError, match=r"desc\.size=16 and total=3"):
        store.writer(CTX, ref="r", desc=DESC, total=3)


# --- writers ---------------------------------------------------------------------------------


def test_a_locked_ref_is_unavailable_with_the_backend_ref(store: ContentStore) -> None:
    first = store.writer(CTX, ref="layer-x")
    with pytest.raises(Unavailable) as info:
        store.writer(CTX, ref="layer-x")
    assert str(info.value) == "ref ns1/1/layer-x locked: unavailable"
    first.close()
    store.writer(CTX, ref="layer-x").close()


def test_commit_checks_size_then_digest_and_keeps_the_ingest(store: ContentStore) -> None:
    w = store.writer(CTX, ref="r")
    w.write(DATA)
    with pytest.raises(FailedPrecondition) as info:
        w.commit(CTX, 3, "")
    assert info.value.message == f'"r" failed size validation: {len(DATA)} != 3'
    w = store.writer(CTX, ref="r")
    wrong = digest_of(b"other")
    with pytest.raises(FailedPrecondition) as info:
        w.commit(CTX, 0, wrong)
    assert info.value.message == f"unexpected commit digest {DIGEST}, expected {wrong}"
    assert store.status(CTX, "r").offset == len(DATA)  # still resumable
    w = store.writer(CTX, ref="r")
    w.commit(CTX, len(DATA), DIGEST)
    assert store.info(CTX, DIGEST).size == len(DATA)
    with pytest.raises(NotFound, match="reference r"):
        store.status(CTX, "r")


def test_a_committed_writer_refuses_more(store: ContentStore) -> None:
    w = store.writer(CTX, ref="r")
    w.write(DATA)
    w.commit(CTX, 0, "")
    with pytest.raises(FailedPrecondition, match="cannot commit on closed writer"):
        w.commit(CTX, 0, "")
    with pytest.raises(Unknown, match="invalid argument"):
        w.write(b"x")


def test_truncate_supports_only_zero(store: ContentStore) -> None:
    w = store.writer(CTX, ref="r")
    w.write(DATA)
    with pytest.raises(Unknown, match="Truncate: unsupported size"):
        w.truncate(3)
    w.truncate(0)
    assert (w.status().offset, w.digest()) == (0, digest_of(b""))


def test_an_ingest_collected_under_an_open_writer_fails_its_commit(store: ContentStore) -> None:
    w = store.writer(CTX, ref="r")
    w.write(DATA)
    store.backend.backend_abort("ns1/1/r")  # the GC's backend sweep, or an Abort
    with pytest.raises(Unknown, match="no such file or directory"):
        w.commit(CTX, 0, "")
    assert DIGEST not in store.db.namespace("ns1").content


def test_an_existing_blob_wins_over_an_ingest_collected_under_the_writer(
    store: ContentStore,
) -> None:
    # content/local/writer.go Commit stats the target blob before it renames the data file:
    # AlreadyExists, which the metadata writer tolerates, so the namespace gets the blob.
    write_blob(Ctx("ns2"), store, "other", DATA, DESC)
    w = store.writer(CTX, ref="r")
    w.write(DATA)
    store.backend.backend_abort("ns1/1/r")
    w.commit(CTX, 0, "")
    assert store.info(CTX, DIGEST).size == len(DATA)
    assert store.backend.backend_ingests() == []


def test_resume_with_another_total_starts_afresh(store: ContentStore) -> None:
    w = store.writer(CTX, ref="r", total=100)
    w.write(b"x" * 10)
    w.close()
    w = store.writer(CTX, ref="r", total=200)
    assert (w.status().offset, w.status().total) == (0, 200)


def test_times_come_from_the_db_clock(store: ContentStore, clock: ManualClock) -> None:
    w = store.writer(CTX, ref="r")
    clock.advance(5)
    w.write(DATA)
    st = w.status()
    assert (st.started_at, st.updated_at) == (1000.0, 1005.0)
    clock.advance(5)
    w.commit(CTX, 0, "", labels={"a": "1", "empty": ""})
    info = store.info(CTX, DIGEST)
    assert (info.created_at, info.updated_at, info.labels) == (1010.0, 1010.0, {"a": "1"})
    clock.advance(5)
    updated = store.update(CTX, Info(DIGEST, labels={"b": "2"}), "labels.b", "labels.a")
    assert (updated.created_at, updated.updated_at, updated.labels) == (1010.0, 1015.0, {"b": "2"})


def test_ingests_without_a_lease_expire_and_are_refreshed(
    store: ContentStore, clock: ManualClock
) -> None:
    store.writer(CTX, ref="r").close()
    ingest = store.db.namespace("ns1").ingests["r"]
    assert ingest.expire_at == 1000.0 + INGEST_EXPIRY
    clock.advance(60)
    store.writer(CTX, ref="r").close()
    assert ingest.expire_at == 1060.0 + INGEST_EXPIRY
    assert ingest.backend_ref == "ns1/1/r"


# --- leases ----------------------------------------------------------------------------------


def test_commit_moves_the_lease_from_ingest_to_content(
    store: ContentStore, leases: LeaseManager
) -> None:
    leases.create(CTX, id="l1")
    leased = CTX.with_lease("l1")
    w = store.writer(leased, ref="r", desc=DESC)
    assert leases.list_resources(CTX, "l1") == [("ingests", "r")]
    w.write(DATA)
    w.commit(leased, 0, "")
    assert leases.list_resources(CTX, "l1") == [("content", DIGEST)]


def test_commit_that_finds_the_blob_still_moves_the_lease(
    store: ContentStore, leases: LeaseManager
) -> None:
    write_blob(CTX, store, "first", DATA, DESC)
    leases.create(CTX, id="l1")
    leased = CTX.with_lease("l1")
    w = store.writer(leased, ref="second")
    w.write(DATA)
    with pytest.raises(AlreadyExists, match=f"content {DIGEST}"):
        w.commit(leased, 0, DIGEST)
    assert leases.list_resources(CTX, "l1") == [("content", DIGEST)]
    assert "second" not in store.db.namespace("ns1").ingests


def test_a_missing_lease_fails_the_writer_and_leaves_nothing(store: ContentStore) -> None:
    with pytest.raises(NotFound) as info:
        store.writer(CTX.with_lease("gone"), ref="r")
    assert str(info.value) == "lease does not exist: not found"
    assert store.db.namespace("ns1").ingests == {}
    assert store.backend.backend_ingests() == []
    write_blob(CTX, store, "r", DATA, DESC)
    with pytest.raises(NotFound) as info:
        store.writer(CTX.with_lease("gone"), ref="r2", desc=DESC)
    assert str(info.value) == "unable to lease content: lease does not exist: not found"


def test_a_lease_deleted_before_commit_fails_it_atomically(
    store: ContentStore, leases: LeaseManager
) -> None:
    leases.create(CTX, id="l1")
    leased = CTX.with_lease("l1")
    w = store.writer(leased, ref="r")
    w.write(DATA)
    leases.delete(CTX, "l1")
    with pytest.raises(NotFound, match="lease does not exist"):
        w.commit(leased, 0, "")
    ns = store.db.namespace("ns1")
    assert DIGEST not in ns.content and "r" in ns.ingests
    assert store.backend.backend_digests() == [DIGEST]  # the backend is not transactional


def test_an_unavailable_ref_does_not_lease_the_ingest(
    store: ContentStore, leases: LeaseManager
) -> None:
    store.writer(CTX, ref="r")
    leases.create(CTX, id="l1")
    with pytest.raises(Unavailable):
        store.writer(CTX.with_lease("l1"), ref="r")
    assert leases.list_resources(CTX, "l1") == []


def test_delete_unleases_and_reports_a_dirty_mutation(
    store: ContentStore, leases: LeaseManager, db: DB
) -> None:
    seen: list[bool] = []
    db.listeners.append(seen.append)
    leases.create(CTX, id="l1")
    write_blob(CTX.with_lease("l1"), store, "r", DATA, DESC)
    assert seen and not any(seen)
    store.delete(CTX.with_lease("l1"), DIGEST)
    assert seen[-1] is True and db.dirty_content
    assert leases.list_resources(CTX, "l1") == []
    assert store.backend.backend_digests() == [DIGEST]  # the backend sweep removes it later


# --- sharing across namespaces ---------------------------------------------------------------


def test_a_shared_writer_has_no_backend_ingest(store: ContentStore) -> None:
    write_blob(CTX, store, "r", DATA, DESC)
    other = Ctx("ns2")
    w = store.writer(other, ref="r", desc=DESC)
    assert store.db.namespace("ns2").ingests["r"].expected == DIGEST
    assert store.list_statuses(other) == []
    with pytest.raises(NotFound, match="no such file or directory"):
        store.status(other, "r")
    with pytest.raises(FailedPrecondition) as info:
        w.commit(other, 5, "")
    assert info.value.message == f'"r" failed size validation: {len(DATA)} != 5'
    with pytest.raises(FailedPrecondition, match='"r" unexpected digest'):
        w.commit(other, 0, digest_of(b"x"))
    w.commit(other, 0, DIGEST)
    assert store.read_blob(other, DESC) == DATA


def test_a_size_mismatch_is_not_shared(store: ContentStore) -> None:
    write_blob(CTX, store, "r", DATA, DESC)
    other = Ctx("ns2")
    w = store.writer(other, ref="r", desc=Descriptor("x", DIGEST, len(DATA) + 1))
    assert w.status().offset == 0
    assert store.db.namespace("ns2").ingests["r"].expected == ""


def test_abort_of_a_shared_ingest_keeps_the_blob(store: ContentStore) -> None:
    write_blob(CTX, store, "r", DATA, DESC)
    store.writer(Ctx("ns2"), ref="r", desc=DESC)
    store.abort(Ctx("ns2"), "r")
    assert store.read_blob(CTX, DESC) == DATA


def test_reader_at_reports_a_blob_the_backend_lost(store: ContentStore) -> None:
    write_blob(CTX, store, "r", DATA, DESC)
    store.backend.backend_delete(DIGEST)
    with pytest.raises(NotFound) as info:
        store.reader_at(CTX, DESC)
    assert info.value.message.startswith(f"blob {DIGEST} expected at /var/lib/containerd/")


def test_reads_are_copies_and_readers_survive_delete(store: ContentStore) -> None:
    write_blob(CTX, store, "r", DATA, DESC, labels={"k": "v"})
    store.info(CTX, DIGEST).labels["k"] = "changed"
    assert store.info(CTX, DIGEST).labels == {"k": "v"}
    reader = store.reader_at(CTX, DESC)
    store.delete(CTX, DIGEST)
    store.backend.backend_delete(DIGEST)
    assert (reader.size, reader.read_at(5, 5)) == (len(DATA), DATA[5:10])


def test_walk_stops_when_fn_raises(store: ContentStore) -> None:
    for i in range(3):
        data = bytes([i]) * 8
        write_blob(CTX, store, f"r{i}", data, Descriptor("x", digest_of(data), 8))
    seen: list[str] = []

    def fn(info: Info) -> None:
        seen.append(info.digest)
        raise StopIteration

    with pytest.raises(StopIteration):
        store.walk(CTX, fn)
    assert len(seen) == 1


def test_backend_protocol_lists_sorted(store: ContentStore) -> None:
    for ref in ("zz", "aa"):
        store.writer(CTX, ref=ref).close()
    assert store.backend.backend_ingests() == ["ns1/1/aa", "ns1/1/zz"]
    store.backend.backend_abort("ns1/1/aa")
    assert store.backend.backend_ingests() == ["ns1/1/zz"]
    store.backend.backend_abort("never")  # no error, as os.RemoveAll


# --- content.Copy (content/helpers.go) -------------------------------------------------------


class _ReaderAtOnly:
    """A source with ``read`` and ``read_at`` but no ``seek`` (an ``io.ReaderAt``)."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def read(self, size: int = -1, /) -> bytes:
        end = len(self._data) if size < 0 else self._pos + size
        chunk = self._data[self._pos : end]
        self._pos += len(chunk)
        return chunk

    def read_at(self, offset: int, size: int) -> bytes:
        return self._data[offset : offset + size]


def test_copy_resumes_a_reader_at_through_a_section_of_size_bytes(store: ContentStore) -> None:
    # seekReader: io.NewSectionReader(ra, offset, size) reads up to offset+size, so a source
    # longer than the blob hands the writer more than the rest, and the commit catches it.
    w = store.writer(CTX, ref="r", desc=DESC)
    w.write(DATA[:4])
    with pytest.raises(FailedPrecondition) as info:
        copy_content(CTX, w, _ReaderAtOnly(DATA + b"extra"), len(DATA), DIGEST)
    assert str(info.value) == (
        f'failed commit on ref "r": "r" failed size validation: {len(DATA) + 4} != '
        f"{len(DATA)}: failed precondition"
    )


class _BrokenWriter:
    """A writer whose writes fail, as a shared writer's does when its ref is locked."""

    def write(self, data: bytes) -> int:
        raise Unavailable("ref ns1/1/r locked")

    def digest(self) -> str:
        return digest_of(b"")

    def status(self) -> Status:
        return Status("r")

    def truncate(self, size: int) -> None:
        pass

    def close(self) -> None:
        pass

    def commit(
        self, ctx: ModelContext, size: int, expected: str, *, labels: dict[str, str] | None = None
    ) -> None:
        raise AssertionError("commit after a failed copy")


def test_copy_wraps_a_failed_write_as_failed_to_copy() -> None:
    # content.Copy: errors.Wrap(err, "failed to copy") around copyWithBuffer.
    with pytest.raises(Unavailable) as info:
        copy_content(CTX, _BrokenWriter(), DATA, len(DATA), DIGEST)
    assert str(info.value) == "failed to copy: ref ns1/1/r locked: unavailable"
