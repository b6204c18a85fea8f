"""SingleStore's extension archives as SingleStore writes them: a plain tar
(GNU or POSIX headers) with ``<extension>.sql`` at its root, holding CREATE
FUNCTION statements that name the archive's other members with ``LOCAL
INFILE`` (docs/singlestore.md). ``archive.read_any`` reads the tar and checks
its members as for our own archives; this is what tells the two apart."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ArchiveError


@dataclass(frozen=True)
class SingleStoreArchive:
    """One SingleStore archive: its script and the members it may name.
    There is no manifest and no signature."""

    name: str
    script: str
    members: dict[str, bytes]
    sha256: str


def singlestore_archive(members: dict[str, bytes], sha256: str) -> SingleStoreArchive:
    """The archive whose checked ``members`` have no manifest: SingleStore's,
    if exactly one ``<extension>.sql`` sits at the root."""
    scripts = [m for m in members if "/" not in m and m.lower().endswith(".sql")]
    if len(scripts) != 1:
        raise ArchiveError(
            "neither a HeliosDB archive (no manifest.toml) nor a SingleStore one (exactly one "
            f"<extension>.sql at the root; found {sorted(scripts) or 'none'})"
        )
    (script,) = scripts
    rest = dict(members)
    try:
        text = rest.pop(script).decode("utf-8")
    except UnicodeDecodeError:
        raise ArchiveError(f"{script} is not UTF-8 text") from None
    return SingleStoreArchive(script[:-4], text, rest, sha256)
