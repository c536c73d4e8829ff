"""Recording through LiveKit egress, for operators who run the egress service.

With ``recording: "egress"`` in the tenant's policy (or ``RECORDING_MODE=egress``), a room
whose session asks to be recorded gets one audio-only room composite egress (everyone in the
room, the agent's replies included, mixed as heard there), requested through livekit-api
when the first session asks and stopped when the job ends. Where the file goes is the egress
service's business (its storage settings); ``RECORDING_EGRESS_FILEPATH`` names it, with
egress's own ``{room_name}`` and ``{time}`` and this worker's ``{tenant}``. No audio passes
through this worker for it, and the per-session transcript and API are not involved.
"""

from __future__ import annotations

from livekit import api

from agent.log import logger
from agent.obs.metrics import RECORDINGS
from agent.settings import Settings


class RoomEgress:
    def __init__(self, settings: Settings, room: str, tenant: str) -> None:
        self._settings = settings
        self.room = room
        self.filepath = settings.recording_egress_filepath.replace("{tenant}", tenant)
        self.egress_id: str | None = None

    def _api(self) -> api.LiveKitAPI:
        s = self._settings
        return api.LiveKitAPI(s.livekit_url, s.livekit_api_key, s.livekit_api_secret)

    async def start(self) -> str | None:
        """Ask for the room's egress (once); its id, or None when LiveKit refused (logged
        and counted: the call goes on unrecorded)."""
        if self.egress_id is not None:
            return self.egress_id
        request = api.RoomCompositeEgressRequest(
            room_name=self.room,
            audio_only=True,
            file_outputs=[
                api.EncodedFileOutput(file_type=api.EncodedFileType.OGG, filepath=self.filepath)
            ],
        )
        try:
            async with self._api() as lk:
                info = await lk.egress.start_room_composite_egress(request)
        except Exception as e:
            RECORDINGS.labels("failed").inc()
            logger.error(
                "room egress not started", extra={"room": self.room, "error": f"{type(e).__name__}"}
            )
            return None
        self.egress_id = info.egress_id
        RECORDINGS.labels("started").inc()
        logger.info("room egress started", extra={"room": self.room, "egress_id": self.egress_id})
        return self.egress_id

    async def stop(self) -> None:
        egress_id, self.egress_id = self.egress_id, None
        if egress_id is None:
            return
        try:
            async with self._api() as lk:
                await lk.egress.stop_egress(api.StopEgressRequest(egress_id=egress_id))
        except Exception as e:  # the room ending stops a room composite egress anyway
            logger.warning(
                "room egress not stopped", extra={"egress_id": egress_id, "error": type(e).__name__}
            )
            return
        RECORDINGS.labels("completed").inc()
        logger.info("room egress stopped", extra={"egress_id": egress_id})
