"""Checkpoint folders: a kill at any step of an overwrite leaves the recorded version complete, and
`clean` then leaves exactly the recorded versions; delete, pruning and failed writes."""

import json
import multiprocessing
import os
from pathlib import Path

import pytest

from anvil import checkpoint_folders as folders

KILLED = 17
# the filesystem calls an overwrite makes; a kill is simulated just before each of them in turn
STEPS = ("rename", "replace", "fsync", "mkdir", "rmdir", "unlink")


def _write(content: str):
    def write(staging: Path) -> None:
        (staging / "adapter_model.safetensors").write_bytes(content.encode() * 1000)
        (staging / "adapter_config.json").write_text(json.dumps({"content": content}))

    return write


def _content(version: Path) -> str:
    """The content a complete version was written with (fails on a partial one)."""
    content = json.loads((version / "adapter_config.json").read_text())["content"]
    assert (version / "adapter_model.safetensors").read_bytes() == content.encode() * 1000
    assert sorted(p.name for p in version.iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
    return content


def _record(record: Path, version: Path) -> None:
    """What the metadata row is to the server: the durable choice of a checkpoint's version."""
    staged = record.with_suffix(".tmp")
    staged.write_text(str(version))
    os.replace(staged, record)


def _recorded(record: Path) -> Path:
    return Path(record.read_text())


def _overwrite(target: Path, record: Path, content: str) -> None:
    """The server's overwrite: write the next version, switch the record, retire the old."""
    version = folders.write_version(target, _write(content))
    _record(record, version)
    folders.retire_superseded(version)


def _killed_at(step: int, counter: Path, run) -> None:
    """Run `run()` in this (forked) process, dying like kill -9 just before filesystem call number
    `step` (no finally blocks, no cleanup); the number of calls made goes to `counter`."""
    calls = 0

    def wrap(name):
        real = getattr(os, name)

        def call(*args, **kwargs):
            nonlocal calls
            calls += 1
            if calls == step:
                os._exit(KILLED)
            return real(*args, **kwargs)

        return call

    for name in STEPS:
        setattr(os, name, wrap(name))
    run()
    counter.write_text(str(calls))
    os._exit(0)


def _run_killed(step: int, counter: Path, run) -> int:
    process = multiprocessing.get_context("fork").Process(target=_killed_at, args=(step, counter, run))
    process.start()
    process.join(30)
    return process.exitcode


def _setup(data_dir: Path) -> tuple[Path, Path]:
    target = folders.named_folder(data_dir, "s:train:0", "weights", "step")
    record = data_dir / "record"
    _overwrite(target, record, "first")
    _overwrite(target, record, "second")  # v1 stays as the kept previous version
    return target, record


def test_a_kill_at_any_step_of_an_overwrite_leaves_the_recorded_version_complete(tmp_path):
    target, record = _setup(tmp_path / "count")
    counter = tmp_path / "calls"
    assert _run_killed(0, counter, lambda: _overwrite(target, record, "third")) == 0
    total = int(counter.read_text())
    assert total >= 10, "an overwrite is a sequence of filesystem steps"
    assert _content(_recorded(record)) == "third"

    seen = set()
    for step in range(1, total + 1):
        data_dir = tmp_path / f"kill-{step}"
        target, record = _setup(data_dir)
        assert _run_killed(step, counter, lambda: _overwrite(target, record, "third")) == KILLED
        recorded = _recorded(record)
        # readable right after the kill, before any cleanup: the old version until the record
        # switched, the new one after
        content = _content(recorded)
        seen.add(content)
        assert content == ("third" if recorded.name == "v000003" else "second")

        folders.clean(data_dir, [recorded])
        assert folders.leftovers(data_dir) == []
        assert [p.name for p in target.iterdir()] == [recorded.name]
        assert _content(recorded) == content
        # and saving goes on from there
        _overwrite(target, record, "fourth")
        assert _content(_recorded(record)) == "fourth"
    assert seen == {"second", "third"}, "kills before and after the record switched were both tried"


def test_overwrite_keeps_one_previous_version_and_numbers_on(tmp_path):
    target, record = _setup(tmp_path)
    assert sorted(p.name for p in target.iterdir()) == ["v000001", "v000002"]
    _overwrite(target, record, "third")
    assert sorted(p.name for p in target.iterdir()) == ["v000002", "v000003"]
    assert folders.latest_version(target) == _recorded(record) == target / "v000003"
    assert _content(target / "v000002") == "second"


def test_clean_removes_staging_removing_and_unrecorded_versions_only(tmp_path):
    target, record = _setup(tmp_path)
    recorded = _recorded(record)
    (target / ".staging-v000003").mkdir()
    (target / ".staging-v000003" / "adapter_model.safetensors").write_bytes(b"half")
    (target / ".removing-v000000").mkdir()
    unrecorded = folders.write_version(target, _write("never recorded"))
    # a staging folder of the single-folder layout, beside the checkpoint folders
    (target.parent / ".step.partial-1234").mkdir()
    # a checkpoint whose record was deleted before its files were
    orphan = folders.write_version(folders.named_folder(tmp_path, "s:train:0", "weights", "deleted"), _write("x"))
    ephemeral = folders.write_version(folders.ephemeral_folder(tmp_path, "s:train:0", 4), _write("unnamed"))
    (ephemeral.parent / ".staging-v000002").mkdir()
    assert len(folders.leftovers(tmp_path)) == 4

    folders.clean(tmp_path, [str(recorded)])
    assert folders.leftovers(tmp_path) == []
    assert [p.name for p in target.iterdir()] == [recorded.name]
    assert not unrecorded.exists() and not orphan.parent.exists()
    assert _content(recorded) == "second"
    assert _content(ephemeral) == "unnamed", "unnamed saves are pruned by count, not at start"


def test_remove_takes_the_version_and_older_ones_but_not_a_newer_save(tmp_path):
    target, record = _setup(tmp_path)
    deleted = _recorded(record)
    newer = folders.write_version(target, _write("saved after the delete"))
    folders.remove(deleted)
    assert [p.name for p in target.iterdir()] == [newer.name]
    folders.remove(newer)
    assert not target.exists()
    folders.remove(newer)  # removing twice is harmless


def test_a_failing_write_leaves_nothing_and_the_old_version_intact(tmp_path):
    target, record = _setup(tmp_path)

    def fail(staging: Path) -> None:
        (staging / "adapter_model.safetensors").write_bytes(b"partial")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        folders.write_version(target, fail)
    assert folders.leftovers(tmp_path) == []
    assert _content(_recorded(record)) == "second"


def test_prune_ephemeral_keeps_the_most_recent_saves(tmp_path):
    for seq in (2, 10, 3, 7):
        folders.write_version(folders.ephemeral_folder(tmp_path, "m", seq), _write(str(seq)))
    folders.prune_ephemeral(tmp_path, "m", keep=2)
    assert sorted(p.name for p in (tmp_path / "ephemeral" / "m").iterdir()) == ["seq-10", "seq-7"]
    assert folders.size_bytes(folders.ephemeral_folder(tmp_path, "m", 10)) > 2000
