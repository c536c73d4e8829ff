"""The Twirp API the project calls: ``AgentDispatchService``, ``RoomService`` and ``Egress``
(egress requests are recorded and answered; no media is recorded).

Requests and replies are protobuf (what livekit-api sends) or JSON; every call needs a
token signed with the server's key and the grant LiveKit requires for it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web
from google.protobuf import json_format
from google.protobuf.message import Message
from livekit.protocol import agent_dispatch, egress, models, room

from .signalling import bearer

if TYPE_CHECKING:
    from livekit.api.access_token import VideoGrants

    from .server import LiveKitTestServer

Handler = Callable[[Any, "VideoGrants"], Awaitable[Message]]


class TwirpError(Exception):
    def __init__(self, status: int, code: str, msg: str) -> None:
        super().__init__(msg)
        self.status, self.code, self.msg = status, code, msg


def _need(ok: bool, what: str) -> None:
    if not ok:
        raise TwirpError(403, "permission_denied", f"the token grants no {what}")


class TwirpApi:
    def __init__(self, server: LiveKitTestServer) -> None:
        self._server = server
        self.calls: list[tuple[str, Message]] = []
        self._methods: dict[str, tuple[type[Message], Handler]] = {
            "livekit.AgentDispatchService/CreateDispatch": (
                agent_dispatch.CreateAgentDispatchRequest,
                self._create_dispatch,
            ),
            "livekit.RoomService/CreateRoom": (room.CreateRoomRequest, self._create_room),
            "livekit.RoomService/ListRooms": (room.ListRoomsRequest, self._list_rooms),
            "livekit.RoomService/DeleteRoom": (room.DeleteRoomRequest, self._delete_room),
            "livekit.RoomService/ListParticipants": (
                room.ListParticipantsRequest,
                self._list_participants,
            ),
            "livekit.Egress/StartRoomCompositeEgress": (
                egress.RoomCompositeEgressRequest,
                self._start_room_egress,
            ),
            "livekit.Egress/StopEgress": (egress.StopEgressRequest, self._stop_egress),
        }
        self.egresses: dict[str, egress.EgressInfo] = {}

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/twirp/{method:.+}", self._handle)

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        if method not in self._methods:
            return _error(TwirpError(404, "bad_route", f"no method {method}"))
        message_type, handler = self._methods[method]
        try:
            claims = self._server.verifier.verify(bearer(request))
        except Exception:
            return _error(TwirpError(401, "unauthenticated", "invalid token"))
        as_json = request.content_type == "application/json"
        body = await request.read()
        message = message_type()
        try:
            if as_json:
                json_format.Parse(body or b"{}", message)
            else:
                message.ParseFromString(body)
        except Exception:
            return _error(TwirpError(400, "malformed", "undecodable request"))
        self.calls.append((method, message))
        try:
            reply = await handler(message, claims.video)
        except TwirpError as e:
            return _error(e)
        if as_json:
            return web.json_response(json_format.MessageToDict(reply))
        return web.Response(body=reply.SerializeToString(), content_type="application/protobuf")

    async def _create_dispatch(
        self, req: agent_dispatch.CreateAgentDispatchRequest, video: VideoGrants
    ) -> Message:
        _need(bool(video and video.room_admin and video.room == req.room), "room admin")
        target = self._server.room(req.room, create=True)
        return self._server.dispatcher.create(target, req.agent_name, req.metadata)

    async def _create_room(self, req: room.CreateRoomRequest, video: VideoGrants) -> Message:
        _need(bool(video and video.room_create), "room create")
        created = self._server.room(req.name, create=True, metadata=req.metadata)
        return created.info()

    async def _list_rooms(self, req: room.ListRoomsRequest, video: VideoGrants) -> Message:
        _need(bool(video and video.room_list), "room list")
        names = set(req.names)
        return room.ListRoomsResponse(
            rooms=[r.info() for r in self._server.rooms.values() if not names or r.name in names]
        )

    async def _delete_room(self, req: room.DeleteRoomRequest, video: VideoGrants) -> Message:
        _need(bool(video and video.room_create), "room create")
        target = self._server.rooms.get(req.room)
        if target is None:
            raise TwirpError(404, "not_found", "requested room does not exist")
        await target.close(models.DisconnectReason.ROOM_DELETED)
        return room.DeleteRoomResponse()

    async def _list_participants(
        self, req: room.ListParticipantsRequest, video: VideoGrants
    ) -> Message:
        _need(bool(video and video.room_admin and video.room == req.room), "room admin")
        target = self._server.rooms.get(req.room)
        if target is None:
            raise TwirpError(404, "not_found", "requested room does not exist")
        return room.ListParticipantsResponse(
            participants=[p.info() for p in target.participants.values()]
        )

    async def _start_room_egress(
        self, req: egress.RoomCompositeEgressRequest, video: VideoGrants
    ) -> Message:
        _need(bool(video and video.room_record), "room record")
        if req.room_name not in self._server.rooms:
            raise TwirpError(404, "not_found", "requested room does not exist")
        info = egress.EgressInfo(
            egress_id=f"EG_{len(self.egresses) + 1}",
            room_name=req.room_name,
            status=egress.EgressStatus.EGRESS_STARTING,
        )
        self.egresses[info.egress_id] = info
        self._server.note("egress_started", req.room_name, info.egress_id)
        return info

    async def _stop_egress(self, req: egress.StopEgressRequest, video: VideoGrants) -> Message:
        _need(bool(video and video.room_record), "room record")
        info = self.egresses.get(req.egress_id)
        if info is None:
            raise TwirpError(404, "not_found", "no such egress")
        info.status = egress.EgressStatus.EGRESS_ENDING
        self._server.note("egress_stopped", info.room_name, info.egress_id)
        return info


def _error(e: TwirpError) -> web.Response:
    return web.json_response({"code": e.code, "msg": e.msg}, status=e.status)
