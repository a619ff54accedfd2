"""Typed server settings: `INSPECTOR_*` environment variables over an optional TOML/JSON file.

Precedence, highest first: values passed in code (command-line flags), environment variables,
the config file (`--config` or `INSPECTOR_CONFIG`), defaults. Settings are built in the app
factory or a command, never at import time. Validators refuse unsafe combinations (auth off on
a network-facing host, short webhook secrets) with a message that says what to change.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import tomllib
from pathlib import Path
from typing import Any, Literal, cast
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from inspector.core.names import NAME_PATTERN, NAME_RE


class WebhookTarget(BaseModel):
    """One webhook receiver; every delivery is signed with HMAC-SHA256 using `secret`."""

    name: str = Field(pattern=NAME_PATTERN)
    url: str = Field(pattern=r"^https?://")
    secret: SecretStr

    @field_validator("secret")
    @classmethod
    def _long_secret(cls, v: SecretStr) -> SecretStr:
        if len(v.get_secret_value()) < 16:
            raise ValueError("webhook secret must be at least 16 characters; generate one with "
                             "`python -c 'import secrets; print(secrets.token_hex(32))'`")
        return v


class _ConfigFileSource(PydanticBaseSettingsSource):
    """Reads the TOML or JSON file named by `config_file` (init value) or INSPECTOR_CONFIG."""

    def __init__(self, settings_cls: type[BaseSettings], init: InitSettingsSource) -> None:
        super().__init__(settings_cls)
        self._init = init

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ returns the whole file at once

    def __call__(self) -> dict[str, Any]:
        raw = self._init.init_kwargs.get("config_file") or os.environ.get("INSPECTOR_CONFIG")
        if not raw:
            return {}
        path = Path(raw)
        if not path.is_file():
            raise ValueError(f"config file {path} does not exist")
        text = path.read_text(encoding="utf-8")
        try:
            data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
        except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ValueError(f"config file {path} is not valid: {exc}") from exc
        return {k.replace("-", "_"): v for k, v in data.items()}


class Settings(BaseSettings):
    """Everything `inspector serve` needs; see README for the environment variable names."""

    model_config = SettingsConfigDict(env_prefix="INSPECTOR_", extra="forbid")

    config_file: Path | None = None
    models_dir: Path = Path("models")
    data_dir: Path = Path("inspector-data")
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    #: SQLAlchemy URL; default SQLite (WAL) at <data_dir>/inspector.db.
    database_url: str | None = None
    #: Production line name: the second level of the MQTT topic.
    line: str = Field(default="line1", pattern=NAME_PATTERN)
    #: Plant or site name (node status topics: inspector/<site>/<line>/node/<id>/status).
    site: str = Field(default="site1", pattern=NAME_PATTERN)
    #: This edge node's name; each node drains only its own outbox rows.
    node_id: str = Field(default_factory=lambda: socket.gethostname()[:64] or "node")
    #: station -> model "name:version" (or "name" when only one version is loaded).
    stations: dict[str, str] = Field(default_factory=dict)
    #: Model for stations not in `stations`; unset = the only loaded model, if there is one.
    default_model: str | None = None
    auth_enabled: bool = True
    providers: Literal["auto", "cpu", "cuda", "tensorrt"] = "auto"
    #: TensorRT may run layers in fp16 (engines cached under <data_dir>/tensorrt-engines).
    trt_fp16: bool = True
    #: Inference calls running at once per model; 0 = decide from the cores (see
    #: `inspector.core.runtime.plan_threads`: on 2 CPU cores, 2 calls of 1 thread each).
    inference_workers: int = Field(default=0, ge=0, le=64)
    #: Threads inside one inference call; 0 = the cores shared evenly between the calls.
    intra_op_threads: int = Field(default=0, ge=0)
    #: With one single-threaded inference call per core (on a CPU), keep each on its own core.
    pin_inference_threads: bool = True
    #: Let ONNX Runtime threads spin while idle: faster alone, slower beside HTTP and decoding.
    ort_spinning: bool = False
    #: Largest batch per inference call; 0 = decide (8 on a CPU, 32 on a GPU).
    max_batch: int = Field(default=0, ge=0, le=256)
    max_delay_ms: float = Field(default=2.0, ge=0.0, le=1000.0)
    #: Frames admitted per model (decoding, queued or in inference) before answering 503.
    queue_size: int = Field(default=64, ge=1)
    work_threads: int = Field(default=2, ge=1, le=64)
    #: Threads OpenCV may use inside one decode, resize or overlay. Frames are already worked
    #: on in parallel (`work_threads`), so 1 avoids threads waiting on each other.
    opencv_threads: int = Field(default=1, ge=0, le=64)
    max_body_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)
    max_pixels: int = Field(default=50_000_000, ge=1)
    #: Longest side a frame may have, in pixels (checked from the header, before decoding).
    #: OpenCV's JPEG codec stops at 65,500 px per side; most line cameras stay under 16,384.
    max_side: int = Field(default=16_384, ge=16, le=65_500)
    #: Memory that frames in flight may hold at once (body + decoded pixels + working copies),
    #: in bytes. A frame that does not fit waits for no one: it answers 503 + Retry-After.
    #: Must hold the largest legal frame (max_pixels, max_side, max_body_bytes; see
    #: `inspector.core.images.worst_frame_bytes`): about 0.91 GB at the defaults.
    max_inflight_bytes: int = Field(default=1024**3, ge=16 * 1024**2)
    #: Frames over this many pixels are decoded on their own single thread, so a few huge
    #: frames cannot hold up normal frames from other stations.
    heavy_frame_pixels: int = Field(default=12_000_000, ge=1)
    #: Refuse frames whose decoder reports corrupt data (400). False: judge what decodes,
    #: for cameras known to send slightly broken JPEGs.
    strict_decode: bool = True
    #: Seconds a client may take to send a request's headers, and between chunks of its body.
    header_timeout_s: float = Field(default=10.0, gt=0, le=3600)
    body_timeout_s: float = Field(default=30.0, gt=0, le=3600)
    #: Seconds an idle keep-alive connection stays open.
    keep_alive_timeout_s: float = Field(default=5.0, gt=0, le=3600)
    #: Open connections at most; beyond this new requests answer 503.
    max_connections: int = Field(default=1000, ge=8)
    #: Retry-After (seconds) sent with 503 answers while the database is unavailable.
    db_retry_after_s: int = Field(default=5, ge=1, le=3600)
    #: Largest model package upload (POST /v1/models), and the most it may unpack to.
    max_package_bytes: int = Field(default=2 * 1024**3, ge=1024)
    # Signed model packages (README "Signed model packages"):
    #: Public keys whose signatures are trusted: each entry is the path of a .pub file
    #: (`inspector models keygen`), or an inline PEM string starting with -----BEGIN.
    trusted_keys: list[str] = Field(default_factory=list)
    #: Refuse unsigned packages and packages signed by a key not in trusted_keys (at startup,
    #: upload and deploy). Packages changed after signing are refused either way.
    require_signed: bool = False
    #: Fraction of passing frames whose image and heatmap are stored (every fail is stored).
    sample_passes: float = Field(default=0.01, ge=0.0, le=1.0)
    retention_days: float = Field(default=30.0, gt=0)
    retention_max_gb: float = Field(default=20.0, gt=0)
    retention_interval_s: float = Field(default=600.0, gt=0)
    #: mqtt://[user:pass@]host[:port] or mqtts://...; unset = no MQTT publishing.
    mqtt_url: str | None = None
    webhooks: list[WebhookTarget] = Field(default_factory=list)
    publish_max_backoff_s: float = Field(default=60.0, gt=0)
    #: Give up on a webhook delivery after this many attempts (0 = never; MQTT never gives up).
    webhook_max_attempts: int = Field(default=0, ge=0)
    # --- Fleet (many nodes on one PostgreSQL; see README "Running a fleet") ---
    #: Stations this node runs and reconciles to the desired state; unset = every station
    #: (a lone node). Deploys to other stations only change the desired state.
    serve_stations: list[str] | None = None
    #: Seconds between two reconciles of the desired state (one also runs after a change).
    reconcile_s: float = Field(default=2.0, gt=0, le=3600)
    #: Seconds between two heartbeats into the nodes table (and to MQTT when configured).
    heartbeat_s: float = Field(default=5.0, gt=0, le=3600)
    #: A node is shown stale after this many of its heartbeat intervals without one.
    stale_after: int = Field(default=3, ge=2, le=1000)
    #: How other nodes and people reach this node; default http://<host>:<port>.
    public_url: str | None = Field(default=None, pattern=r"^https?://")
    #: Keep model packages and flagged frames' image and heatmap in the database, so any node
    #: can fetch the model and show the frame; unset = on with PostgreSQL, off with SQLite.
    fleet_storage: bool | None = None
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    access_log: bool = False
    # --- Review pages (/ui) ---
    #: Signs the review pages' session cookies (32+ characters). Unset: a random secret is
    #: generated once and kept in <data_dir>/session_secret (mode 0600).
    session_secret: SecretStr | None = None
    #: How long a sign-in to the review pages lasts, in hours.
    session_max_age_h: float = Field(default=12.0, gt=0, le=24 * 30)
    # --- OPC UA server for PLCs and SCADA (extra `opcua`; see README "OPC UA") ---
    #: opc.tcp://HOST:PORT/PATH the OPC UA server listens on; unset = no OPC UA server.
    opcua_endpoint: str | None = None
    #: OPC UA user name -> password (8+ characters); clients log in with one of these.
    opcua_users: dict[str, SecretStr] = Field(default_factory=dict)
    #: Let clients connect without a user name (read-only all the same). Off by default.
    opcua_allow_anonymous: bool = False
    #: Server certificate (DER or PEM) and its private key (PEM). With both, the endpoint
    #: offers Basic256Sha256 Sign & Encrypt only; without them it is unencrypted.
    opcua_certificate: Path | None = None
    opcua_private_key: Path | None = None
    #: Allow an unencrypted OPC UA endpoint on a non-loopback address: passwords and verdicts
    #: then cross the network in clear text. Only for a closed cell network.
    opcua_allow_unencrypted: bool = False

    @field_validator("session_secret")
    @classmethod
    def _long_session_secret(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and len(v.get_secret_value()) < 32:
            raise ValueError("session_secret must be at least 32 characters; leave it unset to "
                             "have one generated, or use `python -c 'import secrets; "
                             "print(secrets.token_hex(32))'`")
        return v

    @field_validator("trusted_keys")
    @classmethod
    def _readable_trusted_keys(cls, v: list[str]) -> list[str]:
        """Every entry must be a readable Ed25519 public key: a typo fails at startup, not as
        every signed package refused later."""
        from inspector.core.signing_keys import SigningKeyError, read_trusted

        try:
            read_trusted(v)
        except SigningKeyError as exc:
            raise ValueError(str(exc)) from None
        return v

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        init = cast(InitSettingsSource, init_settings)
        return (init_settings, env_settings, _ConfigFileSource(settings_cls, init))

    @field_validator("database_url")
    @classmethod
    def _supported_database(cls, v: str | None) -> str | None:
        if v is None or v == "":
            return None
        if v.startswith(("postgresql://", "postgres://")):
            return "postgresql+psycopg://" + v.split("://", 1)[1]
        if not v.startswith(("sqlite://", "postgresql+psycopg://")):
            raise ValueError("database_url must be sqlite:///PATH or postgresql://USER@HOST/DB")
        return v

    @field_validator("stations", "serve_stations")
    @classmethod
    def _safe_station_names(
        cls, v: dict[str, str] | list[str] | None
    ) -> dict[str, str] | list[str] | None:
        bad = [s for s in v or () if not NAME_RE.match(s)]
        if bad:
            raise ValueError(f"station names {bad} must match {NAME_PATTERN}")
        return v

    @field_validator("mqtt_url")
    @classmethod
    def _mqtt_scheme(cls, v: str | None) -> str | None:
        if v and not v.startswith(("mqtt://", "mqtts://")):
            raise ValueError("mqtt_url must look like mqtt://host:1883 or mqtts://host:8883")
        return v or None

    @model_validator(mode="after")
    def _no_open_server_without_auth(self) -> Settings:
        if not self.auth_enabled and not is_loopback(self.host):
            raise ValueError(
                f"auth_enabled=false is refused on host {self.host!r}: anyone on the network "
                "could post frames and read records. Keep auth on and create keys with "
                "`inspector keys create --role camera`, or bind to 127.0.0.1"
            )
        if self.require_signed and not self.trusted_keys:
            raise ValueError("require_signed=true needs at least one public key in "
                             "trusted_keys, or every model package would be refused")
        names = [w.name for w in self.webhooks]
        if len(names) != len(set(names)):
            raise ValueError(f"webhook names must be unique, got {names}")
        return self

    @field_validator("opcua_endpoint")
    @classmethod
    def _opcua_url(cls, v: str | None) -> str | None:
        if not v:
            return None
        url = urlsplit(v)
        try:
            port = url.port
        except ValueError:
            port = None
        if url.scheme != "opc.tcp" or not url.hostname or port is None:
            raise ValueError("opcua_endpoint must look like opc.tcp://0.0.0.0:4840/inspector "
                             "(scheme opc.tcp, a host and a port)")
        return v

    @field_validator("opcua_users")
    @classmethod
    def _opcua_passwords(cls, v: dict[str, SecretStr]) -> dict[str, SecretStr]:
        short = sorted(u for u, p in v.items() if len(p.get_secret_value()) < 8)
        if short or "" in v:
            raise ValueError(f"opcua_users: every user needs a name and a password of 8+ "
                             f"characters (too short: {short})")
        return v

    @model_validator(mode="after")
    def _opcua_secure(self) -> Settings:
        if self.opcua_endpoint is None:
            return self
        if not self.opcua_users and not self.opcua_allow_anonymous:
            raise ValueError(
                "opcua_endpoint is set but no client could log in: add users with "
                'INSPECTOR_OPCUA_USERS=\'{"plc": "PASSWORD"}\', or set '
                "opcua_allow_anonymous=true to let anyone who reaches the port read verdicts")
        if (self.opcua_certificate is None) != (self.opcua_private_key is None):
            raise ValueError("set both opcua_certificate and opcua_private_key, or neither")
        host = urlsplit(self.opcua_endpoint).hostname or ""
        if (self.opcua_certificate is None and not is_loopback(host)
                and not self.opcua_allow_unencrypted):
            raise ValueError(
                f"the OPC UA endpoint on {host!r} would be unencrypted: passwords would cross "
                "the network in clear text. Set opcua_certificate and opcua_private_key "
                "(Basic256Sha256 Sign & Encrypt), bind to 127.0.0.1, or accept it with "
                "opcua_allow_unencrypted=true on a closed cell network")
        return self

    @model_validator(mode="after")
    def _budget_holds_the_largest_frame(self) -> Settings:
        from inspector.core.images import worst_frame_bytes  # numpy/OpenCV: only when validating

        worst = worst_frame_bytes(self.max_pixels, self.max_side, self.max_body_bytes)
        if self.max_inflight_bytes < worst:
            raise ValueError(
                f"max_inflight_bytes={self.max_inflight_bytes} cannot hold one legal frame: "
                f"max_pixels={self.max_pixels} with max_body_bytes={self.max_body_bytes} needs "
                f"up to {worst} bytes ({worst / 2**20:.0f} MiB) in flight, so such a frame "
                f"would always be refused. Raise max_inflight_bytes to at least {worst}, or "
                "lower max_pixels or max_body_bytes"
            )
        return self

    @property
    def resolved_database_url(self) -> str:
        """The database URL, defaulting to SQLite in the data folder."""
        return self.database_url or f"sqlite:///{(self.data_dir / 'inspector.db').resolve()}"

    @property
    def artifacts_dir(self) -> Path:
        return self.data_dir / "artifacts"

    @property
    def shares_storage(self) -> bool:
        """True when packages and flagged artifacts go into the database (`fleet_storage`)."""
        if self.fleet_storage is not None:
            return self.fleet_storage
        return self.resolved_database_url.startswith("postgresql")

    @property
    def node_url(self) -> str:
        """Where this node answers (`public_url`, else from host and port)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return self.public_url or f"http://{host}:{self.port}"

    def serves(self, station: str) -> bool:
        """True when this node runs `station` (see `serve_stations`)."""
        return self.serve_stations is None or station in self.serve_stations


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build settings: `overrides` (flags) win over environment and file; None is skipped."""
    values = {k: v for k, v in overrides.items() if v is not None}
    if config_file is not None:
        values["config_file"] = config_file
    return Settings(**values)
