"""Fixtures of the SDK compatibility suite.

The suite drives a running `exposure` (api.auth = "acs") through the
official Python SDK. `tests/api_sdk.rs` starts the service and runs
`pytest tests/sdk` with:

- EXPOSURE_SDK_ENDPOINT: host:port of the service (plain HTTP);
- EXPOSURE_SDK_USERS: JSON {name: {"key", "secret", "qps", "actions"}}, the
  users of its [[api.users]].

The state the service answers from (flows one minute old):

| asset          | port/proto | service | risk | in / out bytes |
|----------------|------------|---------|------|----------------|
| 203.0.113.10   | 22/tcp     | SSH     | 2    | 4000 / 6000    |
| 203.0.113.11   | 443/tcp    | HTTPS   | 0    | 10000 / 90000  |
| 203.0.113.12   | 443/tcp    | HTTPS   | 0    | 1000 / 9000    |
| 203.0.113.13   | 3306/tcp   | MySQL   | 3    | 2000 / 3000    |
| 203.0.113.14   | 40000/tcp  | Unknown | 1    | 40 / 40 (handshakes only) |
| 2001:db8:100::5| 53/udp     | DNS     | 2    | 300 / 700      |
"""

import json
import os

import pytest
from alibabacloud_cloudfw20171207.client import Client
from alibabacloud_tea_openapi.models import Config


def _env(name):
    value = os.environ.get(name)
    if not value:
        pytest.exit(
            f"{name} is not set: run this suite through `cargo test --test api_sdk`, "
            "which starts the service",
            returncode=2,
        )
    return value


ENDPOINT = None
USERS = None


def pytest_configure(config):
    global ENDPOINT, USERS
    ENDPOINT = _env("EXPOSURE_SDK_ENDPOINT")
    USERS = json.loads(_env("EXPOSURE_SDK_USERS"))


def make_client(user=None, *, key=None, secret=None, algorithm=None):
    """A cloudfw client for `user` (or an explicit key and secret), signing
    with ACS3-HMAC-SHA256 by default, signature v1 with algorithm='v2'."""
    if user is not None:
        key = key or USERS[user]["key"]
        secret = secret or USERS[user]["secret"]
    config = Config(
        access_key_id=key,
        access_key_secret=secret,
        endpoint=ENDPOINT,
        protocol="http",
        read_timeout=20000,
        connect_timeout=5000,
    )
    if algorithm:
        config.signature_algorithm = algorithm
    return Client(config)


@pytest.fixture
def users():
    return USERS


@pytest.fixture(params=[None, "v2"], ids=["acs3", "v1"])
def algorithm(request):
    return request.param
