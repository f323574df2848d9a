"""The hidden directory a bundle is built in, and the manifest that closes it.

A bundle is built in a hidden sibling (`.NAME.partial-PID`) and renamed into place only when
complete: an error removes it, and a killed run leaves only that hidden directory, which
`fvsr verify` reports as INCOMPLETE."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from forensic_vsr import __version__, layout
from forensic_vsr.atomic import atomic_write, fsync_dir
from forensic_vsr.audit.bundle_format import checkpoint_extensions
from forensic_vsr.audit.chain import ChainWriter, chain_root
from forensic_vsr.errors import OutputError
from forensic_vsr.media import file_sha256

BUNDLE_FORMAT = "forensic-vsr-bundle/3"  # forensic_vsr.audit.bundle_format says what each format holds


class BundleDir:
    """The bundle under construction. `path(name)` is where a file of the contract goes."""

    def __init__(self, target: Path, with_outputs: bool = True) -> None:
        self.target = target
        parent = target.parent
        if target.exists():
            raise OutputError(f"{target}: already exists; refusing to overwrite a bundle")
        if not parent.is_dir():
            raise OutputError(f"{parent}: output directory does not exist")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise OutputError(f"{parent}: output directory is not writable")
        self.dir = parent / layout.partial_dir_name(target.name, os.getpid())
        try:
            self.dir.mkdir()
            if with_outputs:
                (self.dir / layout.OUTPUT_DIR).mkdir()
        except OSError as exc:
            raise OutputError(f"{parent}: cannot create the bundle ({exc.strerror})") from None

    def path(self, name: str) -> Path:
        return self.dir / name

    def file_entry(self, name: str) -> dict[str, Any]:
        """A recorded file: name, sha256 and size."""
        path = self.path(name)
        return {"name": name, "sha256": file_sha256(path), "size": path.stat().st_size}

    def discard(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def commit(self) -> None:
        """Flush every file to disk, then rename the directory into place."""
        for root, _dirs, files in os.walk(self.dir):
            for name in files:
                fd = os.open(os.path.join(root, name), os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        if self.target.exists():
            raise OutputError(f"{self.target}: appeared while the run was going; the bundle is left at {self.dir}")
        os.rename(self.dir, self.target)
        fsync_dir(self.target.parent)


def write_manifest(bundle: BundleDir, chain: ChainWriter) -> None:
    """manifest.json: the C2SP checkpoint note of the chain, which also signs the manifest's
    format, tool and tool_version; the other fields are checked against the key and the chain."""
    manifest: dict[str, Any] = {
        "format": BUNDLE_FORMAT,
        "tool": "forensic-vsr",
        "tool_version": __version__,
        "public_key": chain.signer.public_pem(),
        "keyid": chain.signer.keyid,
        "chain_root": chain_root(chain.digests),
    }
    manifest["checkpoint"] = chain.checkpoint(checkpoint_extensions(manifest))
    atomic_write(bundle.path(layout.MANIFEST), json.dumps(manifest, indent=2, sort_keys=True) + "\n")
