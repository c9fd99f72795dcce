"""MQTT topic prefixes keep raw device traffic out of CityHub's CloudEvents: on the embedded server topic ``a/b``
is subject ``a.b``, and inside ``cityhub/`` only ``cityhub/raw/`` is raw."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from cityhub_iot_mqtt.settings import IotMqttSettings
from cityhub_recycling.settings import RecyclingSettings


@pytest.mark.parametrize("model", [IotMqttSettings, RecyclingSettings])
@pytest.mark.parametrize("prefix", ["cityhub", "cityhub/iot", "cityhub/events/x"])
def test_a_prefix_among_the_cloudevents_is_refused(model, prefix):
    with pytest.raises(ValidationError, match="use a prefix under cityhub/raw/ or outside cityhub/"):
        model.model_validate({"topic_prefix": prefix})


@pytest.mark.parametrize("model", [IotMqttSettings, RecyclingSettings])
@pytest.mark.parametrize("prefix", ["cityhub/raw/iot", "cityhub/raw", "recycling", "cityhubx/iot"])
def test_a_prefix_under_the_raw_prefix_or_outside_is_taken(model, prefix):
    assert model.model_validate({"topic_prefix": prefix}).topic_prefix == prefix


def test_the_iot_devices_publish_under_the_raw_prefix_by_default():
    assert IotMqttSettings().topic_prefix == "cityhub/raw/iot"
