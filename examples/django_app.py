"""A Django view returning the status, as the original Django REST Framework service did.

Single-file Django for the example; in a project, the view goes in views.py. Run it with
the project's venv (.venv, made by `make test`, which installs Django), from the
repository root:

    .venv/bin/python examples/django_app.py runserver 127.0.0.1:8080 --noreload
    curl localhost:8080/api/v1/status/
"""

from __future__ import annotations

import sys

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.urls import path

from exporter import Config, status_dict
from exporter.config import config_from_mapping

settings.configure(
    DEBUG=False,
    SECRET_KEY="example-only",
    ROOT_URLCONF=__name__,
    ALLOWED_HOSTS=["127.0.0.1", "localhost"],
)

# The original reported the modules loaded in the server process.
STATUS_CONFIG: Config = config_from_mapping({"modules": {"source": "loaded"}})


def status(request: HttpRequest) -> JsonResponse:
    """GET /api/v1/status/: the status of this Django process."""
    return JsonResponse(status_dict(STATUS_CONFIG, server_address=request.get_host()))


urlpatterns = [path("api/v1/status/", status)]

if __name__ == "__main__":
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
