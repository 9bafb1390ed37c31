"""The TTL sweep removes expired checkpoints (rows and files) and nothing else, also when a save
replaced an expired checkpoint between the sweep's listing and its delete."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi.testclient import TestClient

from anvil import checkpoint_folders
from gateway.app import create_app
from gateway.checkpoint_expiry import sweep
from gateway.service import Settings
from gateway.store import CheckpointRow, now_iso

MODEL = "s:train:0"


def _save(service, name: str, expires_at: str | None) -> CheckpointRow:
    target = checkpoint_folders.named_folder(service.data_dir, MODEL, "weights", name)
    version = checkpoint_folders.write_version(target, lambda staging: (staging / "adapter_model.safetensors").write_bytes(b"w"))
    row = CheckpointRow(MODEL, f"weights/{name}", "weights", str(version), now_iso(), 1, False, expires_at, {})
    service.store.sync.add_checkpoint(row)
    return row


def _in(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat(timespec="microseconds")


def test_sweep_removes_expired_checkpoints_only(tmp_path):
    # a sweep interval longer than the test: the sweeps here are the test's own
    with TestClient(create_app(Settings(data_dir=tmp_path, checkpoint_sweep_s=3600))) as client:
        service = client.app.state.service
        expired = _save(service, "expired", _in(-1))
        later = _save(service, "later", _in(3600))
        forever = _save(service, "forever", None)
        assert client.portal.call(service.checkpoint, MODEL, "weights/expired") is None, "unreachable before any sweep"
        assert service.store.sync.checkpoint(MODEL, "weights/expired") == expired
        assert [r.checkpoint_id for r in client.portal.call(service.checkpoints_of_run, MODEL)] == ["weights/later", "weights/forever"]

        assert sweep(service) == 1
        assert service.store.sync.checkpoint(MODEL, "weights/expired") is None
        assert not Path(expired.folder).parent.exists()
        for row in (later, forever):
            assert client.portal.call(service.checkpoint, MODEL, row.checkpoint_id) == row and Path(row.folder).is_dir()
        assert sweep(service) == 0


def test_a_save_replacing_an_expired_checkpoint_survives_the_sweep_that_listed_it(tmp_path):
    with TestClient(create_app(Settings(data_dir=tmp_path, checkpoint_sweep_s=3600))) as client:
        service = client.app.state.service
        stale = _save(service, "name", _in(-1))
        (listed,) = service.store.sync.expired_checkpoints(now_iso())
        fresh = _save(service, "name", None)  # saved again between the listing and the delete
        service.remove_checkpoint(listed)
        assert client.portal.call(service.checkpoint, MODEL, "weights/name") == fresh
        assert Path(fresh.folder).is_dir() and not Path(stale.folder).exists()
