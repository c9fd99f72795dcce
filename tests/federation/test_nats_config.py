"""``cityhub nats-config`` writes every hub's nats-server config and the credentials, from the grid hierarchy."""

from __future__ import annotations

import subprocess
from pathlib import Path

import orjson
import pytest

from hub.cli import main
from hub.nats.embedded import nats_server_binary

REPO = Path(__file__).resolve().parents[2]
HUBS = ["city=10.0.0.1:4222:7422", "510104=10.1.0.1:4222:7422", "510104-01=10.1.1.1:4222:7422"]


CLUSTER = ["city=10.0.0.1:4222:7422:6222", "city=10.0.0.2:4222:7422:6222", "city=10.0.0.3:4222:7422:6222"]


def nats_config(out: Path, *hubs: str, mqtt: tuple[str, ...] = ()) -> int:
    arguments = ["nats-config", "-c", str(REPO / "cityhub.toml"), "--out", str(out), "--store-root", "/srv/nats"]
    return main(
        [
            *arguments,
            *(argument for hub in hubs for argument in ("--hub", hub)),
            *(argument for listener in mqtt for argument in ("--mqtt", listener)),
        ]
    )


def server_accepts(config: Path) -> None:
    checked = subprocess.run(
        [nats_server_binary(), "-t", "-c", str(config)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stderr


def test_every_hub_gets_a_config_the_server_accepts_with_its_domain_and_links(tmp_path, capsys):
    assert nats_config(tmp_path, *HUBS) == 0
    district = (tmp_path / "510104" / "nats-server.conf").read_text()
    assert 'domain: "510104"' in district and 'listen: "10.1.0.1:4222"' in district
    assert '"urls": ["nats-leaf://10.0.0.1:7422"], "account": "CITYHUB"' in district  # the link up to the city
    assert district.count('"nkey": "U') == 1 + 1 + 8 + 1  # its hub, its viewer, its 8 streets' viewers, one link
    assert "# link-510104-01: the leafnode link of the street hub 510104-01" in district
    assert (tmp_path / "510104" / "nats-server.conf").stat().st_mode & 0o077 == 0  # holds the link's seed
    for hub in ("city", "510104", "510104-01"):
        server_accepts(tmp_path / hub / "nats-server.conf")
    assert "credentials (NKey seeds, one per user" in capsys.readouterr().out


def test_generating_again_keeps_the_issued_credentials(tmp_path):
    nats_config(tmp_path, *HUBS[:2])
    issued = (tmp_path / "creds" / "view-510104.nk").read_bytes()
    nats_config(tmp_path, *HUBS)
    assert (tmp_path / "creds" / "view-510104.nk").read_bytes() == issued


def test_a_street_hub_without_its_districts_hub_is_refused(tmp_path, capsys):
    assert nats_config(tmp_path, HUBS[0], HUBS[2]) == 1
    assert "street 510104-01 has a hub but its district 510104 has none" in capsys.readouterr().err
    assert nats_config(tmp_path, "510199=h:1:2") == 1
    assert "--hub '510199=h:1:2': '510199' is not a cell of the admin grids" in capsys.readouterr().err


def test_a_city_on_three_nodes_is_a_cluster_its_districts_link_to_every_node(tmp_path):
    assert nats_config(tmp_path, *CLUSTER, HUBS[1]) == 0
    nodes = [tmp_path / "city" / f"nats-server-{n}.conf" for n in (1, 2, 3)]
    for number, node in enumerate(nodes, start=1):
        text = node.read_text()
        assert f'server_name: "cityhub-city-{number}"' in text and f'listen: "10.0.0.{number}:4222"' in text
        cluster = orjson.loads(
            next(line for line in text.splitlines() if line.startswith("cluster: ")).removeprefix("cluster: ")
        )
        assert cluster["name"] == "cityhub-city" and cluster["listen"] == f"10.0.0.{number}:6222"
        assert sorted(route.rsplit("@", 1)[1] for route in cluster["routes"]) == [
            f"10.0.0.{other}:6222" for other in (1, 2, 3) if other != number
        ]
        assert cluster["authorization"]["password"] == (tmp_path / "creds" / "route-city.password").read_text()
        server_accepts(node)
    district = (tmp_path / "510104" / "nats-server.conf").read_text()
    assert '"urls": ["nats-leaf://10.0.0.1:7422", "nats-leaf://10.0.0.2:7422", "nats-leaf://10.0.0.3:7422"]' in district


def test_a_districts_server_listens_for_its_mqtt_devices_with_a_user_of_their_own(tmp_path):
    assert nats_config(tmp_path, HUBS[0], HUBS[1], mqtt=("510104=1883:cityhub/raw/iot,recycling",)) == 0
    district = (tmp_path / "510104" / "nats-server.conf").read_text()
    assert 'mqtt { listen: "10.1.0.1:1883" }' in district
    devices = orjson.loads(
        next(line for line in district.splitlines() if '"user": "devices-510104"' in line).strip().rstrip(",")
    )
    assert devices["password"] == (tmp_path / "creds" / "devices-510104.password").read_text()
    assert devices["allowed_connection_types"] == ["MQTT"]
    assert devices["permissions"]["publish"]["allow"] == [
        "cityhub.raw.iot",
        "cityhub.raw.iot.>",
        "recycling",
        "recycling.>",
    ]
    assert "mqtt" not in (tmp_path / "city" / "nats-server.conf").read_text()
    server_accepts(tmp_path / "510104" / "nats-server.conf")


@pytest.mark.parametrize(
    ("hubs", "mqtt", "error"),
    [
        (CLUSTER[:2], (), "city is placed on 2 nodes: a JetStream cluster needs 3 or more"),
        ([*CLUSTER[:2], "city=10.0.0.3:4222:7422"], (), "give every node its cluster port"),
        (HUBS[:2], ("510104=1883:cityhub/events",), "would publish raw device messages among CityHub's CloudEvents"),
        (HUBS[:2], ("510104=1883:sensors/#",), "a topic without wildcards"),
        (HUBS[:2], ("510105=1883:sensors",), "--mqtt 510105: no hub of that scope"),
    ],
)
def test_a_cluster_or_mqtt_listener_that_cannot_work_is_refused(tmp_path, capsys, hubs, mqtt, error):
    assert nats_config(tmp_path, *hubs, mqtt=mqtt) == 1
    assert error in capsys.readouterr().err
