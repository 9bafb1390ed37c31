"""Checkpoint folders on disk: where a checkpoint lives, and how it is written, replaced and removed.

Layout, under the data dir:

    checkpoints/<model_id>/<kind>/<name>/v000001/   a complete version of a named checkpoint
    ephemeral/<model_id>/seq-<seq_id>/v000001/      an unnamed sampler save (written once)
    <target>/.staging-v000002/                      a version being written
    <target>/.removing-v000001/                     a version being removed

A version is written in a staging folder beside its final place (same filesystem), its files and
the folder fsynced, then renamed to `v<N>`: it is complete or absent. Saving a name again writes
`v<N+1>` next to `v<N>`; the caller then switches its durable record (the metadata row) to the
new version, which is the moment the new version becomes the checkpoint, and only then retires
the old one. A kill at any point leaves the recorded version complete and in place. Leftovers of a
kill (staging and removing folders, a version never recorded, one superseded but not yet removed)
are removed by `clean` when the server starts.

The version a listed checkpoint is at is the one its record names; a version folder is never
written again once renamed into place, so a reader that resolved it reads one consistent version.
"""

import os
import re
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

CHECKPOINTS_DIR = "checkpoints"
EPHEMERAL_DIR = "ephemeral"
STAGING_PREFIX = ".staging-"
REMOVING_PREFIX = ".removing-"
# superseded versions kept beside the current one, for a reader that resolved a version just
# before it was replaced (a sampling request, a load queued behind the save)
KEPT_PREVIOUS_VERSIONS = 1

_VERSION = re.compile(r"^v(\d{6,})$")


def named_folder(data_dir: Path, model_id: str, kind: str, name: str) -> Path:
    """The folder holding the versions of checkpoint `<kind>/<name>` of `model_id`."""
    return data_dir / CHECKPOINTS_DIR / model_id / kind / name


def ephemeral_folder(data_dir: Path, model_id: str, seq_id: int) -> Path:
    """The folder of an unnamed sampler save, made by `model_id`'s operation `seq_id`."""
    return data_dir / EPHEMERAL_DIR / model_id / f"seq-{seq_id}"


def write_version(target: Path, write: Callable[[Path], None]) -> Path:
    """Write the next version of `target`: `write(staging)` fills a staging folder, which is then
    made durable and renamed into place. Returns the new version's folder.

    Versions of one target are written one at a time (the press runs a model's saves in order)."""
    existing = list(target.iterdir()) if target.is_dir() else []
    number = 1 + max((_number(entry.name) for entry in existing), default=0)
    version = target / _version_name(number)
    staging = target / f"{STAGING_PREFIX}{version.name}"
    # parents: `remove` may just have taken the emptied target folder away
    staging.mkdir(parents=True)
    try:
        write(staging)
        _fsync_tree(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    os.rename(staging, version)
    _fsync_dir(target)
    return version


def retire_superseded(version: Path) -> None:
    """After `version` was recorded as its checkpoint's current one: remove older versions, but
    the most recent `KEPT_PREVIOUS_VERSIONS`."""
    older = sorted((v for v in _versions(version.parent) if _number(v.name) < _number(version.name)), key=_by_number)
    for stale in older[: max(len(older) - KEPT_PREVIOUS_VERSIONS, 0)]:
        _remove_tree(stale)


def remove(version: Path) -> None:
    """Remove a checkpoint whose record (at `version`) was deleted: that version and every older
    one. A newer version, saved after the record was deleted, stays."""
    if _number(version.name) == 0:  # a folder of the single-folder layout (no versions)
        _remove_tree(version)
        return
    for stale in _versions(version.parent):
        if _number(stale.name) <= _number(version.name):
            _remove_tree(stale)
    _remove_if_empty(version.parent)


def prune_ephemeral(data_dir: Path, model_id: str, keep: int) -> None:
    """Remove all but the `keep` most recent unnamed sampler saves of `model_id`."""
    model_folder = data_dir / EPHEMERAL_DIR / model_id
    saves = sorted(
        (f for f in model_folder.glob("seq-*") if f.name.removeprefix("seq-").isdigit()),
        key=lambda f: int(f.name.removeprefix("seq-")),
    )
    for stale in saves[: max(len(saves) - keep, 0)]:
        _remove_tree(stale)


def latest_version(target: Path) -> Path | None:
    """The newest complete version of `target` (what a tool reading the disk directly should load)."""
    versions = sorted(_versions(target), key=_by_number)
    return versions[-1] if versions else None


def size_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def clean(data_dir: Path, recorded: Iterable[str | Path]) -> None:
    """At start, before anything is written: remove every staging and removing folder, and every
    named checkpoint version that is not `recorded` (the folders the metadata rows name)."""
    keep = {Path(folder) for folder in recorded}
    for target in _targets(data_dir / CHECKPOINTS_DIR, depth=3):
        if target in keep:
            continue  # a checkpoint of the single-folder layout: its files sit in the target
        for entry in list(target.iterdir()):
            if entry not in keep and (entry.name.startswith(".") or _VERSION.match(entry.name)):
                _remove_tree(entry)
        _remove_if_empty(target)
    # unnamed saves are pruned by count while serving; here only what a kill left half-done goes
    for target in _targets(data_dir / EPHEMERAL_DIR, depth=2):
        for entry in list(target.iterdir()):
            if entry.name.startswith("."):
                _remove_tree(entry)


def leftovers(data_dir: Path) -> list[Path]:
    """Staging and removing folders anywhere under the checkpoint trees (none after `clean`)."""
    found = []
    for root in (data_dir / CHECKPOINTS_DIR, data_dir / EPHEMERAL_DIR):
        if root.is_dir():
            found += [p for p in root.rglob(".*") if p.name.startswith((STAGING_PREFIX, REMOVING_PREFIX)) or ".partial" in p.name]
    return sorted(found)


def _targets(root: Path, depth: int) -> list[Path]:
    """Folders `depth` levels below `root`; hidden folders on the way (leftovers of the
    single-folder layout's staging) are removed."""
    level = [root] if root.is_dir() else []
    for _ in range(depth):
        below = []
        for folder in level:
            for entry in list(folder.iterdir()):
                if entry.name.startswith("."):
                    _remove_tree(entry)
                elif entry.is_dir():
                    below.append(entry)
        level = below
    return level


def _versions(target: Path) -> list[Path]:
    if not target.is_dir():
        return []
    return [entry for entry in target.iterdir() if _VERSION.match(entry.name)]


def _number(name: str) -> int:
    """The version number in `v<N>` or a staging/removing folder's name; 0 for anything else."""
    for prefix in (STAGING_PREFIX, REMOVING_PREFIX):
        name = name.removeprefix(prefix)
    match = _VERSION.match(name)
    return int(match.group(1)) if match else 0


def _by_number(folder: Path) -> int:
    return _number(folder.name)


def _version_name(number: int) -> str:
    return f"v{number:06d}"


def _remove_tree(folder: Path) -> None:
    """Rename out of the way first (atomic), so a kill mid-removal never leaves a half-removed
    folder under a name that looks complete; the hidden rest goes at the next `clean`."""
    if folder.name.startswith(REMOVING_PREFIX):
        hidden = folder
    else:
        hidden = folder.with_name(f"{REMOVING_PREFIX}{folder.name}")
        try:
            os.rename(folder, hidden)
        except FileNotFoundError:
            return  # removed already
    if hidden.is_dir():
        shutil.rmtree(hidden, ignore_errors=True)
    else:
        hidden.unlink(missing_ok=True)


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass  # not empty (a newer version, a save in progress) or gone


def _fsync_tree(folder: Path) -> None:
    for path in sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
        else:
            _fsync_dir(path)
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
