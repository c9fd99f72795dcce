import orjson

from benchmarks.report import load_rows, render


def test_report_shows_ratio_to_peer_in_same_group(tmp_path):
    raw = {
        "datetime": "2026-11-23T11:00:00",
        "machine_info": {"cpu": {"brand_raw": "test cpu"}, "python_version": "3.11"},
        "benchmarks": [
            {
                "name": "test_ours",
                "group": "dedup",
                "stats": {"median": 0.01},
                "extra_info": {"items": 1000, "role": "cityhub"},
            },
            {
                "name": "test_peer",
                "group": "dedup",
                "stats": {"median": 0.1},
                "extra_info": {"items": 1000, "role": "peer", "note": "dict"},
            },
        ],
    }
    path = tmp_path / "bench.json"
    path.write_bytes(orjson.dumps(raw))
    text = render(*load_rows(path))
    assert "| `test_peer` | peer | 10.00 k/s | 100.000 ms | 10.0× | dict |" in text
    assert "| `test_ours` | cityhub | 100.00 k/s | 10.000 ms | — |  |" in text
    assert "make bench" in text


def test_report_gives_durations_with_their_longest_round_and_ratio_to_ours(tmp_path):
    raw = {
        "datetime": "2026-12-06T11:00:00",
        "machine_info": {},
        "benchmarks": [
            {
                "name": "test_takeover",
                "group": "failover",
                "stats": {"median": 3.2, "max": 4.1},
                "extra_info": {"items": 1, "role": "cityhub", "measure": "duration"},
            },
            {
                "name": "test_restart",
                "group": "failover",
                "stats": {"median": 8.0, "max": 9.5},
                "extra_info": {"items": 1, "role": "peer", "measure": "duration", "note": "systemd"},
            },
        ],
    }
    path = tmp_path / "bench.json"
    path.write_bytes(orjson.dumps(raw))
    text = render(*load_rows(path))
    assert "| benchmark | role | median | longest | this ÷ CityHub | note |" in text
    assert "| `test_takeover` | cityhub | 3.20 s | 4.10 s | — |  |" in text
    assert "| `test_restart` | peer | 8.00 s | 9.50 s | 2.5× | systemd |" in text
