"""The two consumers every Channels app has in some form: a websocket one and a worker.

ChatConsumer joins its room's group on connect, relays the group's messages to its socket and
leaves on disconnect. ShoutWorker runs under ``runworker`` on a normal channel and answers
into a group (and, if asked, to a reply channel), as background tasks do.
"""

import os

from channels.consumer import AsyncConsumer
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from .groups import room_group


class ChatConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self):
        self.group = room_group(self.scope["url_route"]["kwargs"]["room"])
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        # Tells the client which channel and which server process it got (tests check both).
        await self.send_json({"type": "joined", "channel": self.channel_name, "pid": os.getpid()})

    async def receive_json(self, content, **kwargs):
        await self.channel_layer.group_send(
            self.group, {"type": "chat.message", "text": content["text"], "origin": self.channel_name})

    async def chat_message(self, event):
        await self.send_json({"type": "message", "text": event["text"], "origin": event["origin"]})

    async def disconnect(self, code):
        await self.channel_layer.group_discard(self.group, self.channel_name)


class ShoutWorker(AsyncConsumer):
    async def worker_shout(self, message):
        await self.channel_layer.group_send(
            room_group(message["room"]), {"type": "chat.message", "text": message["text"], "origin": "worker"})
        if message.get("reply_to"):
            await self.channel_layer.send(message["reply_to"], {"type": "worker.done", "pid": os.getpid()})
