from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path, re_path
from django.utils.functional import lazy

from runs import api, api_events
from runs.hints import manage_command

# Worked out when the login page renders, not at import.
create_user_command = lazy(manage_command, str)("createsuperuser")

urlpatterns = [
    path("admin/", admin.site.urls),
    path(
        "login/",
        auth_views.LoginView.as_view(extra_context={"create_user_command": create_user_command}),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("api/v1/runs/<uuid:run_id>/events", api_events.run_events, name="api_run_events"),
    path("api/v1/", api.urls()),
    re_path(r"^api/", api.unknown_api_path),  # JSON, never the HTML 404 page
    path("", include("runs.urls")),
]
