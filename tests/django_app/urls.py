from django.urls import path

from .views import announce_view

urlpatterns = [path("rooms/<slug:room>/announce", announce_view)]
