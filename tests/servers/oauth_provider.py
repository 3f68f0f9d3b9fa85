"""A real OAuth2 / OpenID Connect authorization server on loopback, built from Authlib.

Authlib's server components do the protocol work: the authorization code grant with
PKCE (RFC 7636, S256 required), refresh tokens with rotation (every refresh returns a
new refresh token and revokes the old one), revocation (RFC 7009), introspection
(RFC 7662, what Dovecot's ``oauth2`` passdb asks) and OpenID Connect id_tokens signed with
this instance's own RSA key (joserfc), published at ``/jwks`` and found through
``/.well-known/openid-configuration``. Tokens and codes live in memory.

The user who "logs in" at ``/authorize`` is the ``login_hint`` of the request (or
``default_user``): consent is automatic, as a test has no browser. Every token request
is recorded in ``token_requests`` so tests can count refreshes.

Runs Werkzeug's threaded server in a daemon thread of the test process; other processes
(Dovecot, the service, Celery workers) reach it on 127.0.0.1.
"""

from __future__ import annotations

import secrets
import threading
from typing import Any

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from authlib.oidc.core import UserInfo
from authlib.oidc.core.grants import OpenIDCode
from flask import Flask, jsonify, request
from joserfc import jwk
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from tests.servers.oauth_models import AuthCode, Client, Token
from tests.servers.ports import LOOPBACK

# Access tokens live this long unless a test says otherwise (short, like real providers').
ACCESS_TOKEN_TTL = 300
# The client Dovecot uses to introspect tokens (RFC 7662 §2.1 wants it authenticated).
RESOURCE_CLIENT_ID = "dovecot"


class OAuthProvider:
    """One authorization server; ``start()``, register clients, use, ``stop()``."""

    host = LOOPBACK

    def __init__(self, access_token_ttl: int = ACCESS_TOKEN_TTL) -> None:
        self.access_token_ttl = access_token_ttl
        self.default_user = "nobody@example.test"
        self.key = jwk.RSAKey.generate_key(2048, parameters={"kid": secrets.token_hex(4)})
        self.clients: dict[str, Client] = {}
        self.codes: dict[str, AuthCode] = {}
        self.tokens: list[Token] = []
        self.token_requests: list[dict[str, str]] = []  # grant_type, user of each POST /token
        self.lock = threading.RLock()
        self.resource_secret = secrets.token_urlsafe(16)
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self.app = self._build_app()
        self.add_client(RESOURCE_CLIENT_ID, self.resource_secret, [])

    # ---- addresses -----------------------------------------------------------------

    @property
    def port(self) -> int:
        assert self._server is not None, "start() first"
        return self._server.server_port

    @property
    def issuer(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def introspection_url(self) -> str:
        """The introspection endpoint with the resource server's credentials in it."""
        return (
            f"http://{RESOURCE_CLIENT_ID}:{self.resource_secret}@{self.host}:{self.port}/introspect"
        )

    # ---- test controls ---------------------------------------------------------------

    def add_client(self, client_id: str, secret: str, redirect_uris: list[str]) -> Client:
        """Register a confidential client."""
        with self.lock:
            client = Client(client_id, secret, redirect_uris)
            self.clients[client_id] = client
            return client

    def issue(self, user: str, client_id: str, *, expires_in: int | None = None) -> Token:
        """Tokens for ``user`` without the browser dance (as an application of its own would)."""
        with self.lock:
            token = Token(
                self.clients[client_id],
                user,
                "openid email mail offline_access",
                secrets.token_urlsafe(32),
                secrets.token_urlsafe(32),
                expires_in or self.access_token_ttl,
            )
            self.tokens.append(token)
            return token

    def expire_access_tokens(self, user: str) -> None:
        """Make every access token of ``user`` expired now (refresh tokens stay good)."""
        with self.lock:
            for token in self.tokens:
                if token.user == user:
                    token.expires_in = 0

    def revoke_user(self, user: str) -> None:
        """Revoke every token of ``user``, as a user removing the app's access would."""
        with self.lock:
            for token in self.tokens:
                if token.user == user:
                    token.revoked = True

    def refreshes(self, user: str | None = None) -> int:
        """How many refresh_token grants were asked (for ``user``, if given)."""
        with self.lock:
            return sum(
                1
                for r in self.token_requests
                if r["grant_type"] == "refresh_token" and (user is None or r["user"] == user)
            )

    def find_access(self, access_token: str) -> Token | None:
        with self.lock:
            return next((t for t in self.tokens if t.access_token == access_token), None)

    # ---- lifecycle -----------------------------------------------------------------

    def start(self) -> None:
        """Serve on a free loopback port in a daemon thread."""
        if self._server is not None:
            return
        self._server = make_server(
            self.host, 0, self.app, threaded=True, request_handler=_QuietHandler
        )
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop serving (idempotent)."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    # ---- the Authlib server ------------------------------------------------------------

    def _build_app(self) -> Flask:
        app = Flask("oauth-provider")
        app.config["OAUTH2_TOKEN_EXPIRES_IN"] = {
            "authorization_code": 0,
            "refresh_token": 0,
        }
        app.config["OAUTH2_REFRESH_TOKEN_GENERATOR"] = True
        server = AuthorizationServer(app, query_client=self._query_client, save_token=self._save)
        # The expires_in generator reads the TTL at issue time, so tests may change it.
        server.register_token_generator(
            "default", self._bearer_generator(server.create_bearer_token_generator(app.config))
        )
        server.register_grant(_CodeGrant, [CodeChallenge(required=True), _OpenIDCode(self)])
        server.register_grant(_RefreshGrant)
        server.register_endpoint(_Revocation)
        server.register_endpoint(_Introspection)
        app.extensions["provider"] = self
        _routes(app, server, self)
        return app

    def _bearer_generator(self, base: Any) -> Any:
        def generate(
            grant_type: str,
            client: Client,
            user: Any = None,
            scope: str | None = None,
            expires_in: int | None = None,
            include_refresh_token: bool = True,
        ) -> dict[str, Any]:
            token: dict[str, Any] = base(
                grant_type=grant_type,
                client=client,
                user=user,
                scope=scope,
                expires_in=self.access_token_ttl,
                include_refresh_token=include_refresh_token,
            )
            return token

        return generate

    def _query_client(self, client_id: str) -> Client | None:
        return self.clients.get(client_id)

    def _save(self, token: dict[str, Any], req: Any) -> None:
        with self.lock:
            self.tokens.append(
                Token(
                    req.client,
                    req.user,
                    token.get("scope", ""),
                    token["access_token"],
                    token.get("refresh_token"),
                    int(token["expires_in"]),
                )
            )


class _QuietHandler(WSGIRequestHandler):
    """No access log on stderr (the test output stays readable)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


def _provider() -> OAuthProvider:
    from flask import current_app

    provider: OAuthProvider = current_app.extensions["provider"]
    return provider


class _CodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

    def save_authorization_code(self, code: str, req: Any) -> None:
        provider = _provider()
        with provider.lock:
            provider.codes[code] = AuthCode(
                code,
                req.client.client_id,
                req.payload.redirect_uri,
                req.payload.scope,
                req.user,
                req.payload.data.get("code_challenge"),
                req.payload.data.get("code_challenge_method"),
                req.payload.data.get("nonce"),
            )

    def query_authorization_code(self, code: str, client: Client) -> AuthCode | None:
        item = _provider().codes.get(code)
        if item and item.client_id == client.client_id and not item.is_expired():
            return item
        return None

    def delete_authorization_code(self, authorization_code: AuthCode) -> None:
        _provider().codes.pop(authorization_code.code, None)

    def authenticate_user(self, authorization_code: AuthCode) -> str:
        return authorization_code.user


class _OpenIDCode(OpenIDCode):
    def __init__(self, provider: OAuthProvider) -> None:
        super().__init__(require_nonce=False)
        self.provider = provider

    def exists_nonce(self, nonce: str, req: Any) -> bool:
        return False

    def resolve_client_private_key(self, client: Client) -> jwk.RSAKey:
        return self.provider.key

    def get_client_algorithm(self, client: Client) -> str:
        return "RS256"

    def get_encode_header(self, client: Client) -> dict[str, str]:
        return {"alg": "RS256", "kid": str(self.provider.key.kid)}

    def get_client_claims(self, client: Client) -> dict[str, Any]:
        return {"iss": self.provider.issuer, "aud": [client.client_id]}

    def generate_user_info(self, user: str, scope: str) -> UserInfo:
        return UserInfo(sub=user, email=user, email_verified=True)


class _RefreshGrant(grants.RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]
    INCLUDE_NEW_REFRESH_TOKEN = True  # rotation: a new refresh token each time

    def authenticate_refresh_token(self, refresh_token: str) -> Token | None:
        provider = _provider()
        with provider.lock:
            for token in provider.tokens:
                if token.refresh_token == refresh_token:
                    usable = not token.revoked and not token.refresh_used
                    return token if usable else None
        return None

    def authenticate_user(self, refresh_token: Token) -> str:
        return refresh_token.user

    def revoke_old_credential(self, refresh_token: Token) -> None:
        with _provider().lock:
            refresh_token.refresh_used = True
            refresh_token.revoked = True


class _Revocation(RevocationEndpoint):
    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

    def query_token(self, token_string: str, token_type_hint: str | None) -> Token | None:
        provider = _provider()
        with provider.lock:
            for token in provider.tokens:
                if token_string in (token.access_token, token.refresh_token):
                    return token
        return None

    def revoke_token(self, token: Token, req: Any) -> None:
        with _provider().lock:
            token.revoked = True


class _Introspection(IntrospectionEndpoint):
    CLIENT_AUTH_METHODS = ["client_secret_basic"]

    def query_token(self, token_string: str, token_type_hint: str | None) -> Token | None:
        return _provider().find_access(token_string)

    def check_permission(self, token: Token, client: Client, req: Any) -> bool:
        return client.client_id in (RESOURCE_CLIENT_ID, token.client.client_id)

    def introspect_token(self, token: Token) -> dict[str, Any]:
        return {
            "active": True,
            "client_id": token.client.client_id,
            "token_type": "Bearer",
            "username": token.user,
            "sub": token.user,
            "scope": token.scope,
            "exp": int(token.issued_at + token.expires_in),
            "iat": int(token.issued_at),
        }


def _routes(app: Flask, server: AuthorizationServer, provider: OAuthProvider) -> None:
    @app.get("/.well-known/openid-configuration")
    def discovery() -> Any:
        base = provider.issuer
        return jsonify(
            issuer=base,
            authorization_endpoint=f"{base}/authorize",
            token_endpoint=f"{base}/token",
            userinfo_endpoint=f"{base}/userinfo",
            revocation_endpoint=f"{base}/revoke",
            introspection_endpoint=f"{base}/introspect",
            jwks_uri=f"{base}/jwks",
            response_types_supported=["code"],
            grant_types_supported=["authorization_code", "refresh_token"],
            code_challenge_methods_supported=["S256"],
            id_token_signing_alg_values_supported=["RS256"],
            subject_types_supported=["public"],
            scopes_supported=["openid", "email", "profile", "mail", "offline_access"],
        )

    @app.get("/jwks")
    def jwks() -> Any:
        return jsonify(keys=[provider.key.as_dict(private=False)])

    @app.get("/authorize")
    def authorize() -> Any:
        user = request.args.get("login_hint") or provider.default_user
        try:
            grant = server.get_consent_grant(end_user=user)
        except OAuth2Error as error:
            return server.handle_error_response(None, error)
        return server.create_authorization_response(grant=grant, grant_user=user)

    @app.post("/token")
    def token() -> Any:
        grant_type = request.form.get("grant_type", "")
        user = ""
        if grant_type == "refresh_token":
            with provider.lock:
                match = [
                    t
                    for t in provider.tokens
                    if t.refresh_token == request.form.get("refresh_token")
                ]
            user = match[0].user if match else ""
        with provider.lock:
            provider.token_requests.append({"grant_type": grant_type, "user": user})
        return server.create_token_response()

    @app.post("/revoke")
    def revoke() -> Any:
        return server.create_endpoint_response(_Revocation.ENDPOINT_NAME)

    @app.post("/introspect")
    def introspect() -> Any:
        return server.create_endpoint_response(_Introspection.ENDPOINT_NAME)

    @app.get("/userinfo")
    def userinfo() -> Any:
        header = request.headers.get("Authorization", "")
        found = provider.find_access(header.removeprefix("Bearer ").strip())
        if found is None or found.is_expired() or found.is_revoked():
            return jsonify(error="invalid_token"), 401
        return jsonify(sub=found.user, email=found.user, email_verified=True)
