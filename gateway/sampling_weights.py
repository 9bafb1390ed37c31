"""Which weights a sampling request runs on: the base model, or a checkpoint's adapter at its
current version. Shared by the Tinker sampling routes and the OpenAI routes."""

from pathlib import Path

from anvil.types import AdapterRef
from gateway.errors import NotFound
from gateway.store import CheckpointRow, SamplingSessionRow
from gateway.service import KEPT_EPHEMERAL_SAVES, Service, parse_tinker_path


def checkpoint_adapter(tinker_path: str, checkpoint: CheckpointRow) -> AdapterRef:
    # saving a named checkpoint again writes a new row: its creation time is the version
    return AdapterRef(checkpoint=tinker_path, version=checkpoint.created, folder=Path(checkpoint.folder))


async def session_adapter(service: Service, row: SamplingSessionRow) -> AdapterRef | None:
    """The weights behind a sampling session, at their current version (None: the base model)."""
    gone = NotFound(
        f"the weights of sampler {row.sampling_session_id} are gone: its checkpoint was deleted or expired, "
        f"or it is an unnamed save older than the model's {KEPT_EPHEMERAL_SAVES} most recent"
    )
    if row.model_path is None:
        if row.adapter_folder is None:
            return None  # the base model
        folder = Path(row.adapter_folder)
        if not folder.is_dir():
            raise gone
        # unnamed saves (save_weights_and_get_sampling_client) get a folder of their own that is
        # never written again, so one version is all they have
        return AdapterRef(checkpoint=f"unnamed:{folder}", version="0", folder=folder)
    model_id, kind, name = parse_tinker_path(row.model_path)
    checkpoint = await service.checkpoint(model_id, f"{kind}/{name}")
    if checkpoint is None or not Path(checkpoint.folder).is_dir():
        raise gone
    return checkpoint_adapter(row.model_path, checkpoint)
