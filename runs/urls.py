from __future__ import annotations

from django.urls import path

from runs import evidence, views, workspace

app_name = "runs"
urlpatterns = [
    path("", views.home, name="home"),
    path("workspace/", workspace.workspace, name="workspace"),
    path("workspace/layout/", workspace.remember, name="remember"),
    path("workspace/chat/", workspace.chat_log, name="chat_log"),
    path("launch/", workspace.launch, name="launch"),
    path("runs/", views.history, name="history"),
    path("runs/<uuid:run_id>/", views.pane, name="pane"),
    path("runs/<uuid:run_id>/cancel/", views.cancel, name="cancel"),
    path("runs/<uuid:run_id>/steps/<slug:key>/retry/", views.retry, name="retry"),
    path("runs/<uuid:run_id>/retry-cancelled/", views.retry_cancelled, name="retry_cancelled"),
    path("runs/<uuid:run_id>/rerun/", views.rerun, name="rerun"),
    path("runs/<uuid:run_id>/rerun/changes/", views.rerun_with_changes, name="rerun_with_changes"),
    path("runs/<uuid:run_id>/export.<str:fmt>", views.export, name="export"),
    path("runs/<uuid:run_id>/send-to-chat/", views.send_to_chat, name="send_to_chat"),
    path("runs/<uuid:run_id>/citations/<int:number>/", evidence.citation, name="citation"),
]
