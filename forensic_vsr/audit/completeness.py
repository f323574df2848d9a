"""A bundle that was never renamed into place is INCOMPLETE, whatever it holds.

`fvsr enhance` builds a bundle in a hidden sibling `.NAME.partial-PID` (forensic_vsr.layout)
and renames it to NAME only after the manifest is written and every file is flushed. A
directory still under the hidden name is a run that did not finish: killed, crashed, or caught
between writing its manifest and the rename. Its contents can look complete; it is not a bundle."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from forensic_vsr.audit.checks import Check

_PARTIAL = re.compile(r"\.(?P<name>.+)\.partial-(?P<pid>[0-9]+)")


def partial_bundle_name(dirname: str) -> tuple[str, int] | None:
    """(bundle name, pid) of a build directory's name (the inverse of layout.partial_dir_name), else None."""
    m = _PARTIAL.fullmatch(dirname)
    return (m["name"], int(m["pid"])) if m else None


def unfinished_run(bundle: Path) -> Iterator[Check]:
    """One INCOMPLETE check if `bundle` (as given, or where a link leads) is a build directory
    that was never renamed into place; nothing otherwise."""
    for name in dict.fromkeys([Path(bundle).name, Path(bundle).resolve().name]):
        found = partial_bundle_name(name)
        if found is not None:
            target, pid = found
            yield Check(
                "bundle.complete",
                "INCOMPLETE",
                f"{name} is the build directory of run {pid} for bundle {target!r}: the run did not finish "
                "(it was never renamed into place), so its contents are not a bundle",
            )
            return
