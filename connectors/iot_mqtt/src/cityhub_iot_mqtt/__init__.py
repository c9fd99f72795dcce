"""IoT alarms over MQTT 3.1.1 (``iot_mqtt``).

Field devices — combustible gas detectors, water immersion sensors, e-bike shed thermal cameras, manhole cover
tilt sensors, fire hydrant pressure gauges, elevator controllers, door magnets and video-AI cameras — publish
JSON readings and heartbeats to an MQTT broker. The connector looks each device up in the device registry
(CSV or JSON import), applies the type's thresholds, and publishes alarm, recovery and device-offline events.
The default broker is the MQTT listener of the hub's embedded nats-server; any MQTT 3.1.1 broker works.
"""

from __future__ import annotations

from cityhub_iot_mqtt.connector import IotMqttConnector
from cityhub_iot_mqtt.settings import IotMqttSettings
from cityhub_iot_mqtt.simulator import IotDeviceSimulator
from hub.connector_kit import HubHandle, broker_for
from hub.hookspecs import hookimpl


@hookimpl
def plugin_settings_model() -> type[IotMqttSettings]:
    return IotMqttSettings


@hookimpl
def register_connectors(hub: HubHandle, settings: IotMqttSettings) -> list[IotMqttConnector]:
    return [IotMqttConnector(settings, broker_for(hub, settings.broker_url, "iot_mqtt"))]


@hookimpl
def register_simulators(hub: HubHandle, settings: IotMqttSettings) -> list[IotDeviceSimulator]:
    return [IotDeviceSimulator(broker_for(hub, settings.broker_url, "iot_mqtt"), settings)]
