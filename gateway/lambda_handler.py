"""AWS Lambda entry point: ``handler = Mangum(app, lifespan="off")``.

Mangum runs an ASGI lifespan per invocation when asked to, which would open and close the database pool
on every request; with ``lifespan="off"`` the app's :class:`~gateway.services.Services` open lazily on the
first request instead and stay warm across invocations of the same Lambda container.
"""

from __future__ import annotations

from mangum import Mangum

from gateway.app import app

handler = Mangum(app, lifespan="off")
