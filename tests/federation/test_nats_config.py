"""``cityhub nats-config`` writes every hub's nats-server config and the credentials, from the grid hierarchy."""

from __future__ import annotations

import subprocess
from pathlib import Path

from hub.cli import main
from hub.nats.embedded import nats_server_binary

REPO = Path(__file__).resolve().parents[2]
HUBS = ["city=10.0.0.1:4222:7422", "510104=10.1.0.1:4222:7422", "510104-01=10.1.1.1:4222:7422"]


def nats_config(out: Path, *hubs: str) -> int:
    arguments = ["nats-config", "-c", str(REPO / "cityhub.toml"), "--out", str(out), "--store-root", "/srv/nats"]
    return main([*arguments, *(argument for hub in hubs for argument in ("--hub", hub))])


def test_every_hub_gets_a_config_the_server_accepts_with_its_domain_and_links(tmp_path, capsys):
    assert nats_config(tmp_path, *HUBS) == 0
    district = (tmp_path / "510104" / "nats-server.conf").read_text()
    assert 'domain: "510104"' in district and 'listen: "10.1.0.1:4222"' in district
    assert '"url": "nats-leaf://10.0.0.1:7422", "account": "CITYHUB"' in district  # the link up to the city
    assert district.count('"nkey": "U') == 1 + 1 + 8 + 1  # its hub, its viewer, its 8 streets' viewers, one link
    assert "# link-510104-01: the leafnode link of the street hub 510104-01" in district
    assert (tmp_path / "510104" / "nats-server.conf").stat().st_mode & 0o077 == 0  # holds the link's seed
    for hub in ("city", "510104", "510104-01"):
        checked = subprocess.run(
            [nats_server_binary(), "-t", "-c", str(tmp_path / hub / "nats-server.conf")], capture_output=True, text=True
        )
        assert checked.returncode == 0, checked.stderr
    assert "credentials (NKey seeds, one per user)" in capsys.readouterr().out


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
