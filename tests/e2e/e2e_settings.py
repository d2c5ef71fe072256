"""Constants shared by the end-to-end tests (a unique module name: conftest modules shadow each other)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: Reaches containers only through the emulator's secrets; tests assert it never reaches the caller.
SENTINEL = "sk-SENTINELe2e0123456789abc"
SECRET_NAME = "openai-secret"
#: The collector's key, in OTEL_EXPORTER_OTLP_HEADERS of the same secret: it must reach the collector and no log.
OTLP_KEY = "otlpE2Ekey-7c1d9e0f2a3b4c5d"
