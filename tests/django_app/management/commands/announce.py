from django.core.management import BaseCommand

from ...announce import announce


class Command(BaseCommand):
    help = "Send a text to every websocket client of a chat room through the channel layer."

    def add_arguments(self, parser):
        parser.add_argument("room")
        parser.add_argument("text")

    def handle(self, *args, room, text, **options):
        announce(room, text, origin="command")
