import nats

import hub
from hub.errors import ConfigError, HubError


def test_core_extension_is_built_and_private():
    assert hub.core_version() == hub.__version__


def test_errors_inherit_matching_builtin():
    assert issubclass(ConfigError, ValueError) and issubclass(ConfigError, HubError)


async def test_embedded_nats_has_jetstream(nats_url):
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        await js.add_stream(name="PROBE", subjects=["probe.>"])
        ack = await js.publish("probe.x", b"hello")
        assert ack.seq == 1
    finally:
        await nc.close()
