"""The config sections of fleet work: ``[mqtt]`` (events to a broker) and ``[models]``
(signed rollout). Kept apart from config.py only for size; same style: ``check()`` returns
every problem, the loader in config.py adds the section name and did-you-mean hints.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class MqttConfig:
    """Events, health and availability to an MQTT broker (the ``[fleet]`` extra)."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 1883  # 8883 is usual with TLS
    device_id: str = ""  # empty: the host name; also the MQTT client id
    topic_prefix: str = ""  # empty: mpox-edge/<device_id>/
    tls: bool = False
    ca_file: str = ""  # empty with tls: the system's CA store
    cert_file: str = ""  # client certificate (mutual TLS), with key_file
    key_file: str = ""
    username: str = ""
    password_file: str = ""  # the password is read from this file, never the config
    keepalive_s: int = 30
    health_interval_s: float = 30.0
    images: bool = False  # attach snapshot JPEGs (base64) to decision events that have one
    commands: bool = False  # accept .../set/reload and .../set/model (needs TLS + auth)
    max_inflight: int = 100

    def check(self) -> list[str]:
        e = []
        if not 1 <= self.port <= 65535:
            e.append(f"port must be 1..65535, not {self.port}")
        if self.topic_prefix and (
            not self.topic_prefix.endswith("/") or set(self.topic_prefix) & {"#", "+"}
        ):
            e.append(f"topic_prefix must end with '/' and hold no + or #: {self.topic_prefix!r}")
        if any(c in self.device_id for c in "/#+ "):
            e.append(f"device_id must not contain '/', '#', '+' or spaces: {self.device_id!r}")
        for key in ("ca_file", "cert_file", "key_file", "password_file"):
            v = getattr(self, key)
            if v and not Path(v).is_file():
                e.append(f"{key} {v!r} does not exist")
        if bool(self.cert_file) != bool(self.key_file):
            e.append("cert_file and key_file go together (client certificate and its key)")
        if (self.ca_file or self.cert_file) and not self.tls:
            e.append("ca_file/cert_file are set but tls = false: set tls = true")
        if self.password_file and not self.username:
            e.append("password_file needs a username")
        if self.commands and not (self.tls and (self.password_file or self.cert_file)):
            e.append(
                "commands = true needs an authenticated TLS connection: tls = true and "
                "username + password_file or cert_file + key_file"
            )
        if self.keepalive_s < 5 or self.health_interval_s <= 0 or self.max_inflight < 1:
            e.append("need keepalive_s >= 5, health_interval_s > 0 and max_inflight >= 1")
        return e


@dataclass
class ModelsConfig:
    """The signed model store under <state_dir>/models (``mpox-edge model install``)."""

    trusted_keys: list[str] = field(default_factory=list)  # Ed25519 public keys, base64
    keep: int = 2  # installed versions kept: the current one and the one to roll back to
    classes: list[str] = field(default_factory=list)  # empty: those of the running model

    def check(self) -> list[str]:
        e = []
        if self.keep < 2:
            e.append(f"keep must be >= 2 (current and previous), not {self.keep}")
        for k in self.trusted_keys:
            try:
                raw = base64.b64decode(k, validate=True)
            except (ValueError, binascii.Error):
                raw = b""
            if len(raw) != 32:
                e.append(f"trusted_keys: {k[:20]!r}... is not a base64 Ed25519 public key")
        return e
