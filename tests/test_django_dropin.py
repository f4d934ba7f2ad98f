"""Our reference layers as drop-in CHANNEL_LAYERS backends of a real Django Channels 4 project.

The project in tests/django_app is what a Channels user writes: a chat consumer on a group,
a worker on a normal channel under ``runworker``, and sync Django code (a view, a management
command) calling ``async_to_sync(group_send)``. It runs in-process under channels.testing and
as real daphne / runworker processes talking to real websocket clients. channels_redis is
run through the same tests as a control: what passes there is what Django Channels expects.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import uuid
from dataclasses import dataclass

import django
import pytest
from django.conf import settings

from tests.django_app import settings as project_settings

if not settings.configured:  # configured here rather than via os.environ, which subprocesses inherit
    settings.configure(**{name: getattr(project_settings, name) for name in dir(project_settings) if name.isupper()})
django.setup()

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.test import Client, override_settings
from websockets.asyncio.client import connect as ws_connect

from tests.django_app.asgi import application
from tests.django_app.groups import WORKER_CHANNEL, room_group
from tests.django_app.processes import PROJECT_ROOT, Deployment, deployment
from tests.helpers import GENEROUS, run
from tests.server_marks import needing

DELIVERY_TIMEOUT = 20.0  # generous: other test sessions share the 2 cores
QUIET_PERIOD = 0.5  # how long "nothing more arrives" is watched for

# name -> (BACKEND, fixtures it needs, CONFIG builder)
LAYERS = {
    "inmemory": ("reference_layers.inmemory.InMemoryChannelLayer", (), lambda tag, f: {}),
    "ipc": ("reference_layers.ipc.IPCChannelLayer", (), lambda tag, f: {"prefix": tag}),
    "redis": ("reference_layers.redis.RedisChannelLayer", ("redis_urls",),
              lambda tag, f: {"hosts": f["redis_urls"], "prefix": tag}),
    "rabbitmq": ("reference_layers.rabbitmq.RabbitMQChannelLayer", ("rabbitmq_url",),
                 lambda tag, f: {"url": f["rabbitmq_url"], "prefix": tag}),
    # Control: the public layer Django Channels users run in production. With redis-py 8 it
    # needs socket_timeout=None, else its 5 s BZPOPMIN races redis-py's new 5 s read timeout
    # and receive() raises redis TimeoutError in idle consumers (django/channels_redis#422).
    "channels_redis": ("channels_redis.core.RedisChannelLayer", ("redis_urls",),
                       lambda tag, f: {"hosts": [{"address": url, "socket_timeout": None} for url in f["redis_urls"]],
                                       "prefix": tag}),
}
ALL_LAYERS = [needing(name, *fixtures) for name, (_, fixtures, _) in LAYERS.items()]
CROSS_PROCESS_LAYERS = [needing(name, *LAYERS[name][1]) for name in ("ipc", "redis", "rabbitmq", "channels_redis")]


def layer_setting(request, name: str) -> tuple[str, dict]:
    """BACKEND and a CONFIG private to this use (own prefix), starting servers it needs."""
    backend, fixtures, build = LAYERS[name]
    values = {fixture: request.getfixturevalue(fixture) for fixture in fixtures}
    return backend, build(f"dropin{uuid.uuid4().hex[:12]}", values)


def fresh_room() -> str:
    return f"room{uuid.uuid4().hex[:10]}"


@contextlib.asynccontextmanager
async def project_layer(backend: str, config: dict, clean: bool = True):
    """The layer Django Channels builds from CHANNEL_LAYERS (the code path of every consumer),
    for this block; ``clean`` flushes it afterwards so no server keeps our test's state."""
    with override_settings(CHANNEL_LAYERS={"default": {"BACKEND": backend, "CONFIG": config}}):
        layer = get_channel_layer()
        try:
            yield layer
        finally:
            if clean:
                await layer.flush()
            if hasattr(layer, "close_pools"):  # channels_redis
                await layer.close_pools()
            else:
                await layer.close()


async def next_json(receive) -> dict:
    return await asyncio.wait_for(receive(), DELIVERY_TIMEOUT)


def chat(text: str, origin: str) -> dict:
    """What a chat client receives for a group message."""
    return {"type": "message", "text": text, "origin": origin}


# --- in one process: channels.testing ------------------------------------------------------------
@dataclass
class InProcessClient:
    communicator: WebsocketCommunicator
    channel: str

    async def next(self) -> dict:
        return await self.communicator.receive_json_from(DELIVERY_TIMEOUT)


async def join_in_process(stack: contextlib.AsyncExitStack, room: str) -> InProcessClient:
    communicator = WebsocketCommunicator(application, f"/ws/chat/{room}/")
    connected, _ = await communicator.connect(DELIVERY_TIMEOUT)
    assert connected
    stack.push_async_callback(communicator.disconnect, 1000, DELIVERY_TIMEOUT)  # a no-op once disconnected
    joined = await communicator.receive_json_from(DELIVERY_TIMEOUT)
    assert joined["type"] == "joined" and joined["pid"] == os.getpid()
    return InProcessClient(communicator, joined["channel"])


@pytest.mark.parametrize("layer_name", ALL_LAYERS)
def test_websocket_consumers_chat_through_the_group_and_leave_it(layer_name, request):
    """Every client gets every client's message once; a disconnected consumer's channel
    gets no later group message."""
    backend, config = layer_setting(request, layer_name)

    async def scenario():
        async with project_layer(backend, config) as layer, contextlib.AsyncExitStack() as stack:
            room = fresh_room()
            clients = [await join_in_process(stack, room) for _ in range(3)]
            assert len({client.channel for client in clients}) == 3
            for sender in clients:
                text = f"hello from {sender.channel}"
                await sender.communicator.send_json_to({"text": text})
                for client in clients:
                    assert await client.next() == chat(text, sender.channel)

            gone = clients.pop()
            await gone.communicator.disconnect(timeout=DELIVERY_TIMEOUT)  # returns once the consumer has finished
            await layer.group_send(room_group(room), {"type": "chat.message", "text": "after", "origin": "test"})
            for client in clients:
                assert await client.next() == chat("after", "test")
            # The group message was sent before this probe: had the channel still been a
            # member, its copy would come first (or at the latest, right after).
            await layer.send(gone.channel, {"type": "probe"})
            assert await next_json(lambda: layer.receive(gone.channel)) == {"type": "probe"}
            with pytest.raises(asyncio.TimeoutError):
                message = await asyncio.wait_for(layer.receive(gone.channel), QUIET_PERIOD)
                pytest.fail(f"the disconnected consumer's channel still got {message!r}")
            for client in clients:
                assert await client.communicator.receive_nothing(QUIET_PERIOD)

    run(scenario())


@pytest.mark.parametrize("layer_name", ALL_LAYERS)
def test_sync_django_view_reaches_websocket_consumers(layer_name, request):
    """A plain view calling async_to_sync(group_send), requested through django.test.Client."""
    backend, config = layer_setting(request, layer_name)

    async def scenario():
        async with project_layer(backend, config), contextlib.AsyncExitStack() as stack:
            room = fresh_room()
            clients = [await join_in_process(stack, room) for _ in range(2)]
            response = await sync_to_async(Client().post)(f"/rooms/{room}/announce", {"text": "from a view"})
            assert response.status_code == 200, response.content
            for client in clients:
                assert await client.next() == chat("from a view", "view")

    run(scenario())


# --- across processes: daphne servers, runworker, real websocket clients -------------------------
@dataclass
class Deployed:
    name: str
    backend: str
    config: dict
    deployment: Deployment


@pytest.fixture(scope="module", params=CROSS_PROCESS_LAYERS)
def deployed(request, tmp_path_factory):
    """Two daphne servers and a runworker on one layer, shared by this module's tests."""
    backend, config = layer_setting(request, request.param)
    with deployment(backend, config, tmp_path_factory.mktemp(f"dropin-{request.param}")) as running:
        yield Deployed(request.param, backend, config, running)

    async def clean():
        async with project_layer(backend, config, clean=True):
            pass

    run(clean())  # after every process of the deployment has stopped


def run_deployed(deployed: Deployed, coroutine):
    """Runs the scenario; a failure shows what the servers and the worker logged."""
    try:
        run(coroutine)
    except BaseException as exc:
        raise AssertionError(f"{exc!r} on {deployed.name}\n{deployed.deployment.log_text()}") from exc
    deployed.deployment.assert_running()


@dataclass
class WsClient:
    socket: object
    channel: str
    pid: int

    async def next(self) -> dict:
        return json.loads(await asyncio.wait_for(self.socket.recv(), DELIVERY_TIMEOUT))

    async def say(self, text: str) -> None:
        await self.socket.send(json.dumps({"text": text}))


async def join_server(stack: contextlib.AsyncExitStack, deployment: Deployment, server: int, room: str) -> WsClient:
    socket = await stack.enter_async_context(ws_connect(deployment.ws_url(server, room), open_timeout=DELIVERY_TIMEOUT))
    joined = json.loads(await asyncio.wait_for(socket.recv(), DELIVERY_TIMEOUT))
    assert joined["type"] == "joined"
    assert joined["pid"] == deployment.server_pid(server)  # served by that daphne
    return WsClient(socket, joined["channel"], joined["pid"])


async def join_both_servers(stack, deployment: Deployment, room: str) -> list[WsClient]:
    """Two clients on server 1, one on server 2, all in ``room``."""
    return [await join_server(stack, deployment, server, room) for server in (0, 0, 1)]


def test_clients_of_two_daphne_servers_chat_through_the_layer(deployed):
    async def scenario():
        async with contextlib.AsyncExitStack() as stack:
            clients = await join_both_servers(stack, deployed.deployment, fresh_room())
            assert clients[0].pid == clients[1].pid != clients[2].pid
            for sender in (clients[0], clients[2], clients[1]):  # server 1 -> 2, 2 -> 1, 1 -> 2
                text = f"hello from pid {sender.pid}, {sender.channel}"
                await sender.say(text)
                for client in clients:
                    assert await client.next() == chat(text, sender.channel)

    run_deployed(deployed, scenario())


def test_management_command_in_another_process_reaches_both_servers(deployed):
    """``python -m django announce``: sync code in a third process, async_to_sync(group_send)."""

    async def scenario():
        async with contextlib.AsyncExitStack() as stack:
            room = fresh_room()
            clients = await join_both_servers(stack, deployed.deployment, room)
            command = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "django", "announce", room, "from a command",
                cwd=PROJECT_ROOT, env={**os.environ, **deployed.deployment.env},
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
            try:
                output, _ = await asyncio.wait_for(command.communicate(), GENEROUS)
            finally:
                if command.returncode is None:
                    command.kill()
                    await command.wait()
            assert command.returncode == 0, output.decode(errors="replace")
            for client in clients:
                assert await client.next() == chat("from a command", "command")

    run_deployed(deployed, scenario())


def test_runworker_answers_a_send_to_its_normal_channel(deployed):
    """This process sends to the worker's normal channel; the runworker process answers into
    the room's group (both servers' clients) and to this process's reply channel."""

    async def scenario():
        async with project_layer(deployed.backend, deployed.config, clean=False) as layer, \
                contextlib.AsyncExitStack() as stack:
            room = fresh_room()
            clients = await join_both_servers(stack, deployed.deployment, room)
            reply_to = await layer.new_channel()
            await layer.send(WORKER_CHANNEL, {"type": "worker.shout", "room": room, "text": "from the worker",
                                              "reply_to": reply_to})
            for client in clients:
                assert await client.next() == chat("from the worker", "worker")
            done = await next_json(lambda: layer.receive(reply_to))
            assert done == {"type": "worker.done", "pid": deployed.deployment.worker_pid}

    run_deployed(deployed, scenario())
