from __future__ import annotations

from django.urls import path

from runs import views

app_name = "runs"
urlpatterns = [
    path("", views.home, name="home"),
    path("runs/<uuid:run_id>/", views.pane, name="pane"),
]
