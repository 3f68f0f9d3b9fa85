"""create_app: wiring only — settings, runtime, blueprints, hooks, error handlers."""

from __future__ import annotations

import logging

from apiflask import APIFlask

from email_service import __version__
from email_service.api import (
    accounts,
    changes,
    events,
    export,
    folders,
    headers,
    health,
    messages,
    metrics,
    oauth,
    search,
    sync,
    web,
    webhooks,
)
from email_service.api.http import bodies, cors, hooks, limits, openapi, problems
from email_service.api.http.auth import authenticate
from email_service.api.http.context import EXTENSION
from email_service.api.http.flask_app import ServiceApp
from email_service.api.outgoing import compose, outbox, send
from email_service.config import Settings, load_settings, with_generated_secrets
from email_service.jobs import wire_queue
from email_service.observability.logging import configure_logging
from email_service.services.runtime import Runtime


def prepare_settings(settings: Settings | None = None) -> Settings:
    """Load settings and fill development secrets from DATA_DIR (warning in the log)."""
    settings = settings or load_settings()
    return with_generated_secrets(settings, logging.getLogger("email_service").warning)


def create_app(
    settings: Settings | None = None, configure_logs: bool = True, background: bool = False
) -> APIFlask:
    """The WSGI application."""
    settings = settings or load_settings()
    if configure_logs:
        configure_logging(settings.log_level, settings.log_dir)
    settings = prepare_settings(settings)
    app = ServiceApp(
        "email_service",
        title="email-service",
        version=settings.service_version or __version__,
        docs_path="/docs",
        spec_path="/openapi.json",
        docs_ui="swagger-ui",
    )
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_bytes
    app.config["JSON_SORT_KEYS"] = False
    app.request_class = bodies.ApiRequest
    app.json = bodies.JSONProvider(app)
    runtime = Runtime.build(settings)
    wire_queue(runtime, background=background)
    app.extensions[EXTENSION] = runtime
    openapi.configure(app, settings.tenant_id_header)
    problems.register(app)
    cors.configure(app, settings)
    limits.trust_proxies(app, settings.trusted_proxies, settings.forwarded_allow_ips)
    app.before_request(hooks.start_request)
    limits.guard_ip(app, settings)  # before the token check: guessing tokens is limited too
    app.before_request(authenticate)
    limits.guard_tenant(app, settings)  # after it: the tenant is the verified one
    app.before_request(bodies.check_body)  # only a client past the limits and token is parsed
    app.after_request(hooks.finish_request)
    app.teardown_request(hooks.end_scope)
    app.register_blueprint(health.bp)
    app.register_blueprint(metrics.bp)
    app.register_blueprint(accounts.bp)
    app.register_blueprint(export.bp)
    app.register_blueprint(headers.bp)
    app.register_blueprint(sync.bp)
    app.register_blueprint(messages.bp)
    app.register_blueprint(folders.bp)
    app.register_blueprint(search.bp)
    app.register_blueprint(compose.bp)
    app.register_blueprint(outbox.bp)
    app.register_blueprint(send.bp)
    app.register_blueprint(web.bp)  # the browser client at /
    app.register_blueprint(oauth.bp)
    app.register_blueprint(changes.bp)
    app.register_blueprint(changes.no_stream)  # /api/events when nginx does not route it
    app.register_blueprint(webhooks.bp)
    if background and events.embedded_wanted(settings):
        events.start_embedded(runtime)  # `make run`: /api/events on EVENTS_PORT, same process
        app.config[web.EVENTS_EMBEDDED] = True  # the client reads it there (/web/config)
    return app
