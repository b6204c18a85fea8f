"""Extension archives: pack, verify, sign, install atomically, refuse hostile input."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

import heliosdb_wasm as h
from conftest import registry_snapshot, wasm_of
from heliosdb_wasm import archive as ar
from heliosdb_wasm.archive import ArchiveError, ProcedureSpec

ADD = ProcedureSpec(
    name="add_i64",
    file="wasm/numeric.wasm",
    abi="basic",
    signature="(a BIGINT, b BIGINT) RETURNS BIGINT",
)
MUL = ProcedureSpec(
    name="mul_i64",
    file="wasm/numeric.wasm",
    abi="basic",
    signature="(a BIGINT, b BIGINT) RETURNS BIGINT",
    capabilities=("read:items",),
    limits={"fuel": 1000000},
)


def make(
    tmp_path: Path,
    version: str = "1.0.0",
    procedures: tuple[ProcedureSpec, ...] = (ADD, MUL),
    key: ar.Ed25519PrivateKey | None = None,
    extra: dict[str, bytes] | None = None,
) -> Path:
    out = tmp_path / f"math-{version}.tar.gz"
    files = {"wasm/numeric.wasm": wasm_of("numeric"), "wit/numeric.wit": b"// none\n"}
    files.update(extra or {})
    ar.pack("math", version, procedures, files, out, description="sums", signing_key=key)
    return out


def test_pack_then_install_then_call(db: h.Database, tmp_path: Path) -> None:
    path = make(tmp_path)
    arc = ar.read_archive(path)
    assert arc.manifest.name == "math" and arc.manifest.version == "1.0.0"
    assert set(arc.manifest.files) == {"wasm/numeric.wasm", "wit/numeric.wit", "install.sql"}
    assert "CREATE OR REPLACE PROCEDURE add_i64(a BIGINT, b BIGINT)" in arc.install_sql
    ext = db.install_extension(path)
    assert ext.procedures == (("add_i64", 1), ("mul_i64", 1))
    assert db.execute("SELECT add_i64(40, 2), mul_i64(6, 7)").rows == [(42, 42)]
    assert db.versions("mul_i64")[0].capabilities.sorted() == ["read:items"]
    assert db.versions("mul_i64")[0].limit_overrides == {"fuel": 1000000}


def test_a_newer_version_adds_procedure_versions_and_keeps_the_old(
    db: h.Database, tmp_path: Path
) -> None:
    db.install_extension(make(tmp_path, "1.0.0"))
    newer = ProcedureSpec(
        name="add_i64",
        file="wasm/numeric.wasm",
        abi="basic",
        export="mul_i64",
        signature="(a BIGINT, b BIGINT) RETURNS BIGINT",
    )
    db.install_extension(make(tmp_path, "1.1.0", procedures=(newer,)))
    assert db.execute("SELECT add_i64(6, 7)").scalar() == 42
    assert [v.version for v in db.versions("add_i64")] == [1, 2]
    db.execute("ALTER PROCEDURE add_i64 USE VERSION 1")
    assert db.execute("SELECT add_i64(6, 7)").scalar() == 13
    assert [e.version for e in db.extensions()] == ["1.0.0", "1.1.0"]
    with pytest.raises(h.RegistryError, match="already installed"):
        db.install_extension(make(tmp_path, "1.1.0", procedures=(newer,)))


def test_sql_create_and_drop_extension(db: h.Database, tmp_path: Path) -> None:
    path = make(tmp_path)
    with pytest.raises(ArchiveError, match="holds extension math, not maths"):
        db.execute(f"CREATE EXTENSION maths FROM '{path}'")
    db.execute(f"CREATE EXTENSION math FROM '{path}'")
    assert db.execute("SELECT add_i64(1, 2)").scalar() == 3
    db.execute("DROP EXTENSION math")
    assert db.procedures() == [] and db.extensions() == []
    with pytest.raises(h.SqlError):
        db.execute("SELECT add_i64(1, 2)")
    db.execute("DROP EXTENSION IF EXISTS math")
    with pytest.raises(h.RegistryError, match="no extension named math"):
        db.execute("DROP EXTENSION math")


def test_signed_archives_verify_with_their_key_only(db: h.Database, tmp_path: Path) -> None:
    public = ar.generate_key(tmp_path / "k.key", tmp_path / "k.pub")
    other = ar.generate_key(tmp_path / "o.key", tmp_path / "o.pub")
    signed = make(tmp_path, key=ar.load_private_key(tmp_path / "k.key"))
    before = registry_snapshot(db)
    with pytest.raises(ArchiveError, match="does not verify"):
        db.install_extension(signed, other)
    assert registry_snapshot(db) == before
    ext = db.install_extension(signed, str(tmp_path / "k.pub"))
    assert ext.signed_by == public.hex()
    with pytest.raises(ArchiveError, match="refusing to overwrite"):
        ar.generate_key(tmp_path / "k.key", tmp_path / "new.pub")


def test_an_unsigned_archive_is_refused_when_a_key_is_required(
    db: h.Database, tmp_path: Path
) -> None:
    public = ar.generate_key(tmp_path / "k.key", tmp_path / "k.pub")
    with pytest.raises(ArchiveError, match="is not signed"):
        db.execute(f"CREATE EXTENSION math FROM '{make(tmp_path)}' KEY '{public.hex()}'")
    assert db.procedures() == []


def test_a_signed_archive_with_a_changed_member_is_refused(tmp_path: Path) -> None:
    ar.generate_key(tmp_path / "k.key", tmp_path / "k.pub")
    signed = make(tmp_path, key=ar.load_private_key(tmp_path / "k.key"))
    members = _members(signed)
    members["wit/numeric.wit"] = b"// changed\n"
    with pytest.raises(ArchiveError, match="does not match the manifest"):
        ar.read_archive(_tar(members))


def test_install_is_all_or_nothing(db: h.Database, tmp_path: Path) -> None:
    # The second procedure's declared signature does not fit its export.
    bad = ProcedureSpec(
        name="half",
        file="wasm/numeric.wasm",
        abi="basic",
        export="half_f32",
        signature="(a BIGINT) RETURNS BIGINT",
    )
    before = registry_snapshot(db)
    with pytest.raises(h.ProcedureError):
        db.install_extension(make(tmp_path, procedures=(ADD, bad)))
    assert registry_snapshot(db) == before
    with pytest.raises(h.SqlError):
        db.execute("SELECT add_i64(1, 2)")


def test_a_procedure_of_someone_else_is_not_replaced(db: h.Database, tmp_path: Path) -> None:
    db.execute("CREATE TABLE add_i64_t(x)")  # unrelated
    (tmp_path / "n.wasm").write_bytes(wasm_of("numeric"))
    db.execute(
        "CREATE PROCEDURE add_i64(a BIGINT, b BIGINT) RETURNS BIGINT LANGUAGE wasm"
        f" USING EXPORT 'mul_i64' AS $wasm$file://{tmp_path / 'n.wasm'}$wasm$"
    )
    before = registry_snapshot(db)
    with pytest.raises(ArchiveError, match="does not belong to extension math"):
        db.install_extension(make(tmp_path))
    assert registry_snapshot(db) == before


# --- hostile archives --------------------------------------------------------------


def _members(path: Path) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    with tarfile.open(path) as tar:
        for m in tar.getmembers():
            f = tar.extractfile(m)
            assert f is not None
            out[m.name] = f.read()
    return out


def _tar(
    members: dict[str, bytes],
    tweak: Callable[[tarfile.TarFile], None] | None = None,
    gz: bool = True,
) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if gz else "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if tweak:
            tweak(tar)
    return buf.getvalue()


def _link(kind: bytes, name: str, target: str) -> Callable[[tarfile.TarFile], None]:
    def add(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.linkname = target
        tar.addfile(info)

    return add


def _manifest_with(members: dict[str, bytes], old: bytes, new: bytes) -> dict[str, bytes]:
    changed = dict(members)
    assert old in changed["manifest.toml"]
    changed["manifest.toml"] = changed["manifest.toml"].replace(old, new)
    return changed


def _install_sql(members: dict[str, bytes], sql: bytes) -> dict[str, bytes]:
    """Swap install.sql, keeping the manifest's hash of it right."""
    import hashlib

    old = hashlib.sha256(members["install.sql"]).hexdigest().encode()
    changed = _manifest_with(members, old, hashlib.sha256(sql).hexdigest().encode())
    changed["install.sql"] = sql
    return changed


HOSTILE: dict[str, tuple[Callable[[dict[str, bytes]], bytes], str]] = {
    "path traversal": (lambda m: _tar({**m, "../evil.wasm": b"x"}), r"'\.\.'"),
    "absolute path": (lambda m: _tar({**m, "/etc/evil": b"x"}), "absolute"),
    "nested traversal": (lambda m: _tar({**m, "wasm/../../x": b"x"}), r"'\.\.'"),
    "symlink": (
        lambda m: _tar(m, _link(tarfile.SYMTYPE, "wasm/link.wasm", "/etc/passwd")),
        "is a link",
    ),
    "hard link": (
        lambda m: _tar(m, _link(tarfile.LNKTYPE, "wasm/hard.wasm", "wasm/numeric.wasm")),
        "is a link",
    ),
    "device file": (lambda m: _tar(m, _link(tarfile.CHRTYPE, "dev", "")), "special file"),
    "duplicate member": (
        lambda m: _tar(m, lambda t: _add(t, "wasm/numeric.wasm", b"other")),
        "more than once",
    ),
    "case-folded duplicate": (
        lambda m: _tar(m, lambda t: _add(t, "WASM/numeric.wasm", b"other")),
        "more than once",
    ),
    "unknown manifest field": (
        lambda m: _tar(_manifest_with(m, b"format = 1", b"format = 1\nrun_as_root = true")),
        "unknown field.*run_as_root",
    ),
    "unknown procedure field": (
        lambda m: _tar(_manifest_with(m, b'abi = "basic"', b'abi = "basic"\nsetuid = 1')),
        "unknown field.*setuid",
    ),
    "mismatched hash": (
        lambda m: _tar({**m, "wit/numeric.wit": b"// tampered\n"}),
        "does not match the manifest",
    ),
    "unlisted member": (lambda m: _tar({**m, "wasm/extra.wasm": b"x"}), "not listed"),
    "missing member": (
        lambda m: _tar({k: v for k, v in m.items() if k != "wit/numeric.wit"}),
        "missing member",
    ),
    "no manifest": (
        lambda m: _tar({k: v for k, v in m.items() if k != "manifest.toml"}),
        "no manifest.toml",
    ),
    "not a tar": (lambda m: b"PK\x03\x04 a zip, perhaps", "not a readable tar"),
    "truncated": (lambda m: _tar(m)[:200], "not a readable tar|truncated"),
    "bad signature size": (lambda m: _tar({**m, "signature.ed25519": b"short"}), "64-byte"),
    "install.sql runs other SQL": (
        lambda m: _tar(_install_sql(m, b"DROP TABLE items;")),
        "only hold CREATE PROCEDURE",
    ),
    "install.sql reads a host file": (
        lambda m: _tar(
            _install_sql(
                m,
                m["install.sql"].replace(b"file://wasm/numeric.wasm", b"file:///etc/passwd"),
            )
        ),
        "not a file of the archive",
    ),
    "install.sql grants more than the manifest": (
        lambda m: _tar(_install_sql(m, m["install.sql"].replace(b"'read:items'", b"'read:*'"))),
        "differs from the manifest",
    ),
}


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_archives_are_refused_and_install_nothing(
    db: h.Database, tmp_path: Path, case: str
) -> None:
    build, message = HOSTILE[case]
    hostile = tmp_path / "hostile.tar.gz"
    hostile.write_bytes(build(_members(make(tmp_path))))
    before = registry_snapshot(db)
    tables = db.execute("SELECT name FROM sqlite_master ORDER BY name").rows
    with pytest.raises(ArchiveError, match=message):
        db.execute(f"CREATE EXTENSION math FROM '{hostile}'")
    assert registry_snapshot(db) == before
    assert db.execute("SELECT name FROM sqlite_master ORDER BY name").rows == tables
    assert not (tmp_path.parent / "evil.wasm").exists()


def test_oversized_and_bomb_members_are_refused_before_decompression(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ar, "MAX_MEMBER_BYTES", 1024 * 1024)
    members = _members(make(tmp_path))
    # 64 MiB of zeros compresses to ~64 KiB: the declared size is refused
    # before any of it is inflated.
    bomb = _tar({**members, "wasm/bomb.wasm": bytes(64 * 1024 * 1024)})
    assert len(bomb) < 1024 * 1024
    with pytest.raises(ArchiveError, match="over 1048576"):
        ar.read_archive(bomb)
    monkeypatch.setattr(ar, "MAX_MEMBERS", 3)
    with pytest.raises(ArchiveError, match="more than 3 members"):
        ar.read_archive(_tar(members))
    monkeypatch.setattr(ar, "MAX_ARCHIVE_BYTES", 100)
    with pytest.raises(ArchiveError, match="over 100"):
        ar.read_archive(make(tmp_path, version="2.0.0"))
