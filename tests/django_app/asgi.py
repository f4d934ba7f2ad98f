"""The ASGI application: HTTP to Django, websockets to the chat, the worker channel to ShoutWorker."""

import os

from django.conf import settings

if not settings.configured:  # a test process may have configured Django itself
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.django_app.settings")

from django.core.asgi import get_asgi_application

django_http = get_asgi_application()  # sets Django up before the consumers are imported

from channels.routing import ChannelNameRouter, ProtocolTypeRouter, URLRouter
from django.urls import path

from .consumers import ChatConsumer, ShoutWorker
from .groups import WORKER_CHANNEL

application = ProtocolTypeRouter({
    "http": django_http,
    "websocket": URLRouter([path("ws/chat/<slug:room>/", ChatConsumer.as_asgi())]),
    "channel": ChannelNameRouter({WORKER_CHANNEL: ShoutWorker.as_asgi()}),
})
