"""TLS for both ports, from certificate and key files that are reloaded without dropping the server.

grpc's dynamic server credentials ask for a new configuration at every handshake; we answer with
one only when a file's modification time changed or SIGHUP asked for it, so a renewed certificate
(cert-manager, an operator's copy) takes effect for new connections while open ones carry on.
Mutual TLS (``client_ca``) applies to the admin port: the agency's tools present certificates
whose subjects the access file lists; the thousands of HIS and POS clients of the check port do not.
"""

from __future__ import annotations

import logging
import pathlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import grpc

log = logging.getLogger("gatekeeper.tls")


@dataclass(frozen=True, slots=True)
class TlsFiles:
    cert: pathlib.Path
    key: pathlib.Path
    client_ca: pathlib.Path | None = None  # set: the admin port requires client certificates signed by it


class ReloadingCredentials:
    def __init__(self, files: TlsFiles, *, mutual: bool) -> None:
        self.files = files
        self.mutual = mutual and files.client_ca is not None
        self._stamp = self._stamps()
        self._reload_requested = False
        self._initial = self._configuration()  # a bad file stops the start, with its name

    def server_credentials(self) -> grpc.ServerCredentials:
        # grpc's stubs say the fetcher returns a configuration; grpc itself documents None as "unchanged".
        fetch = cast(Callable[[], grpc.ServerCertificateConfiguration], self._fetch)
        return grpc.dynamic_ssl_server_credentials(self._initial, fetch, require_client_authentication=self.mutual)

    def request_reload(self) -> None:
        """SIGHUP: take the files again at the next handshake even if their times did not change."""
        self._reload_requested = True

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        stamp = self._stamps()
        if stamp == self._stamp and not self._reload_requested:
            return None
        self._stamp, self._reload_requested = stamp, False
        try:
            config = self._configuration()
        except OSError as exc:  # half-copied files: keep serving with what we have
            log.warning("TLS files could not be reloaded; keeping the current ones: %s", exc)
            return None
        log.info("TLS certificate reloaded", extra={"cert": str(self.files.cert)})
        return config

    def _configuration(self) -> grpc.ServerCertificateConfiguration:
        pair = (self.files.key.read_bytes(), self.files.cert.read_bytes())
        ca = self.files.client_ca.read_bytes() if self.mutual and self.files.client_ca else None
        return grpc.ssl_server_certificate_configuration([pair], root_certificates=ca)

    def _stamps(self) -> tuple[float, ...]:
        paths = [self.files.cert, self.files.key, *([self.files.client_ca] if self.files.client_ca else [])]
        return tuple(p.stat().st_mtime if p.exists() else 0.0 for p in paths)
