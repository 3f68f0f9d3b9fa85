"""Finding 12: API answers are no-store and nosniff; forwarded headers are trusted only from
the proxy's network (the service's ProxyFix and Gunicorn's forwarded_allow_ips); the CORS
default is empty in production; the stack's nginx terminates TLS with HSTS and headers,
and the service's secrets come from compose secrets files."""

from __future__ import annotations

import re
import runpy
import secrets
from pathlib import Path
from typing import Any

import pytest
import yaml

from email_service.app import create_app
from email_service.config import Settings
from email_service.security.crypto import generate_key
from email_service.store import migrate
from tests.conftest import TENANT_A, TENANT_B, bearer

REPO = Path(__file__).resolve().parents[2]


def _app(sqlite_settings: Any, **extra: Any) -> Any:
    app = create_app(sqlite_settings(**extra), configure_logs=False)
    migrate.upgrade(app.extensions["email_service"].db.engine)
    return app


def test_api_answers_are_no_store_and_nosniff(sqlite_settings: Any) -> None:
    client = _app(sqlite_settings).test_client()
    for tenant in (TENANT_A, TENANT_B):
        ok = client.get("/api/accounts", headers={**bearer(tenant), "X-Tenant-ID": tenant})
        assert ok.status_code == 200
        assert ok.headers["Cache-Control"] == "no-store"
        assert ok.headers["X-Content-Type-Options"] == "nosniff"
    refused = client.get("/api/accounts")
    assert refused.status_code == 401
    assert refused.headers["Cache-Control"] == "no-store"
    assert client.get("/health").headers["X-Content-Type-Options"] == "nosniff"


def test_forwarded_for_is_read_only_from_the_proxy_network(sqlite_settings: Any) -> None:
    app = _app(
        sqlite_settings,
        rate_limit_enabled=True,
        rate_limit_requests_per_minute=2,
        trusted_proxies=1,
        forwarded_allow_ips=["172.18.0.0/16"],
    )
    outsider = app.test_client()
    outsider.environ_base["REMOTE_ADDR"] = "10.66.1.1"
    spoofed = [
        outsider.get("/openapi.json", headers={"X-Forwarded-For": f"198.51.100.{i}"})
        for i in range(3)
    ]
    assert [r.status_code for r in spoofed] == [200, 200, 429]  # one client, whatever it says
    proxy = app.test_client()
    proxy.environ_base["REMOTE_ADDR"] = "172.18.0.5"
    behind = [
        proxy.get("/openapi.json", headers={"X-Forwarded-For": f"203.0.113.{i}"}) for i in range(3)
    ]
    assert [r.status_code for r in behind] == [200, 200, 200]  # three clients behind nginx


def test_gunicorn_trusts_forwarded_headers_only_from_the_proxy_network(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "metrics"))
    monkeypatch.setenv("FLASK_ENV", "development")
    monkeypatch.setenv("TRUSTED_PROXIES", "1")
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "172.18.0.0/16")
    config = runpy.run_path(str(REPO / "deploy/gunicorn.conf.py"))
    assert config["forwarded_allow_ips"] == "172.18.0.0/16"
    monkeypatch.delenv("FORWARDED_ALLOW_IPS")
    config = runpy.run_path(str(REPO / "deploy/gunicorn.conf.py"))
    assert config["forwarded_allow_ips"] not in ("*", "")  # never every address


def test_cors_default_is_empty_in_production() -> None:
    base: dict[str, Any] = {
        "_env_file": None,
        "jwt_secret": secrets.token_urlsafe(48),
        "encryption_key": [generate_key()],
    }
    prod = Settings(flask_env="production", **base)
    assert prod.cors_origin_urls == []
    chosen = Settings(flask_env="production", cors_origins="https://app.example", **base)
    assert chosen.cors_origin_urls == ["https://app.example"]
    dev = Settings(flask_env="development", **base)
    assert "http://localhost:3000" in dev.cors_origin_urls


def test_nginx_terminates_tls_with_hsts_and_headers() -> None:
    conf = (REPO / "deploy/nginx/nginx.conf").read_text()
    assert re.search(r"listen 443 ssl;", conf)
    assert "ssl_certificate /etc/nginx/tls/server.pem;" in conf
    assert "ssl_certificate_key /etc/nginx/tls/server.key;" in conf
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in conf
    assert re.search(r'Strict-Transport-Security "max-age=\d{8,}; includeSubDomains" always', conf)
    for header in ("X-Content-Type-Options", "X-Frame-Options", "Referrer-Policy"):
        assert f"add_header {header}" in conf, header
    assert "return 301 https://$host$request_uri;" in conf  # port 80 only redirects


def test_compose_passes_the_service_secrets_as_files() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    environment = compose["x-app-environment"]
    assert "JWT_SECRET" not in environment and "ENCRYPTION_KEY" not in environment
    assert {"jwt_secret", "encryption_key"} <= set(compose["secrets"])
    sources = {s["source"] if isinstance(s, dict) else s for s in compose["x-app"]["secrets"]}
    assert {"jwt_secret", "encryption_key"} <= sources


def test_no_container_gets_a_password_in_its_environment_or_command() -> None:
    text = (REPO / "docker-compose.yml").read_text()
    compose = yaml.safe_load(text)
    secret_names = re.compile(r"\$\{?[A-Z0-9_]*(PASSWORD|SECRET)[A-Z0-9_]*(?![A-Z0-9_]*_FILE)")
    for name, service in {"x-app": compose["x-app"], **compose["services"]}.items():
        environment = service.get("environment") or {}
        if isinstance(environment, dict):
            environment = [f"{k}={v}" for k, v in environment.items()]
        for entry in [*environment, *_command_words(service)]:
            assert not secret_names.search(str(entry)), (name, entry)
    for url in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"):
        value = re.sub(r"\$\{[^}]*\}", "name", compose["x-app-environment"][url])
        assert "@" not in value or ":" not in value.split("//", 1)[1].split("@")[0], value
    wanted = {"database_password", "redis_password", "s3_secret_key"}
    assert wanted <= set(compose["secrets"])
    sources = {s["source"] if isinstance(s, dict) else s for s in compose["x-app"]["secrets"]}
    assert wanted <= sources
    assert compose["services"]["postgres"]["environment"]["POSTGRES_PASSWORD_FILE"]


def _command_words(service: dict[str, Any]) -> list[str]:
    command = service.get("command") or []
    return [command] if isinstance(command, str) else [str(word) for word in command]


def test_settings_read_secrets_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = secrets.token_urlsafe(48)
    (tmp_path / "jwt_secret").write_text(secret + "\n")
    monkeypatch.setenv("SECRETS_DIR", str(tmp_path))
    monkeypatch.delenv("JWT_SECRET", raising=False)
    monkeypatch.setenv("FLASK_ENV", "development")
    assert Settings(_env_file=None).jwt_secret == secret  # type: ignore[call-arg]
