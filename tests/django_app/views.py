from django.http import JsonResponse
from django.views.decorators.http import require_POST

from .announce import announce


@require_POST
def announce_view(request, room):
    """POST text=... : tells the room's websocket clients (a plain sync Django view)."""
    announce(room, request.POST["text"], origin="view")
    return JsonResponse({"sent": True})
