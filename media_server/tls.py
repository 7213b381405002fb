"""The server's TLS context, built from the configured files and reloaded in place.

Reloading loads the new chain into the same `SSLContext` the listening socket uses, so
new connections get the new certificate and open ones are not disturbed.
"""

from __future__ import annotations

import ssl

from media_server.config import ConfigError, TlsSettings


def _load(context: ssl.SSLContext, tls: TlsSettings) -> None:
    assert tls.cert_file is not None and tls.key_file is not None
    try:
        context.load_cert_chain(tls.cert_file, tls.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"tls: cannot use {tls.cert_file} and {tls.key_file}: {exc.strerror or exc}"
        ) from None


def _new() -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class ServerTls:
    def __init__(self, tls: TlsSettings) -> None:
        self.context = _new()
        _load(self.context, tls)

    @staticmethod
    def check(tls: TlsSettings) -> None:
        """Raise ConfigError unless these files make a usable certificate and key."""
        if tls.enabled:
            _load(_new(), tls)

    def reload(self, tls: TlsSettings) -> None:
        if tls.enabled:
            _load(self.context, tls)
