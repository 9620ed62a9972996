"""Client channels for the CLI: plaintext by default (loopback), TLS when a CA is given, and the
admin credentials (a bearer token from a file or the environment, never from a flag that `ps` shows)."""

from __future__ import annotations

import argparse
import os
import pathlib

import grpc

TLS_CA_ENV = "GATEKEEPER_TLS_CA"
CLIENT_CERT_ENV = "GATEKEEPER_TLS_CLIENT_CERT"
CLIENT_KEY_ENV = "GATEKEEPER_TLS_CLIENT_KEY"
TOKEN_ENV = "GATEKEEPER_ADMIN_TOKEN"
TOKEN_FILE_ENV = "GATEKEEPER_ADMIN_TOKEN_FILE"


def add_tls_arguments(parser: argparse.ArgumentParser, *, admin: bool = False) -> None:
    parser.add_argument(
        "--tls-ca", default=None, help=f"PEM CA that signed the server's certificate [env {TLS_CA_ENV}]"
    )
    if not admin:
        return
    parser.add_argument(
        "--tls-client-cert", default=None, help=f"PEM client certificate (mTLS) [env {CLIENT_CERT_ENV}]"
    )
    parser.add_argument(
        "--tls-client-key", default=None, help=f"PEM key of the client certificate [env {CLIENT_KEY_ENV}]"
    )
    parser.add_argument(
        "--token-file", default=None, help=f"file holding the admin token [env {TOKEN_FILE_ENV}, or {TOKEN_ENV}]"
    )


def _setting(args: argparse.Namespace, name: str, env: str) -> str | None:
    value = getattr(args, name, None) or os.environ.get(env)
    return str(value) if value else None


def open_channel(target: str, args: argparse.Namespace) -> grpc.Channel:
    ca = _setting(args, "tls_ca", TLS_CA_ENV)
    if ca is None:
        return grpc.insecure_channel(target)
    cert = _setting(args, "tls_client_cert", CLIENT_CERT_ENV)
    key = _setting(args, "tls_client_key", CLIENT_KEY_ENV)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=pathlib.Path(ca).read_bytes(),
        private_key=pathlib.Path(key).read_bytes() if key else None,
        certificate_chain=pathlib.Path(cert).read_bytes() if cert else None,
    )
    return grpc.secure_channel(target, credentials)


def admin_metadata(args: argparse.Namespace, operator: str) -> list[tuple[str, str]]:
    metadata = [("x-operator", operator)]
    token_file = _setting(args, "token_file", TOKEN_FILE_ENV)
    token = pathlib.Path(token_file).read_text().strip() if token_file else os.environ.get(TOKEN_ENV)
    if token:
        metadata.append(("authorization", f"Bearer {token}"))
    return metadata
