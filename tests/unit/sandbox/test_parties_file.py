"""Parties files for `peppol-migrate sandbox --parties`: good rows register with their owner and
document types, every bad line is named and nothing is registered, and the written batch
migrates each party the right way."""

from __future__ import annotations

import csv
import stat

import pytest

from migration_engine.errors import InputError
from migration_engine.sandbox import SandboxModel
from migration_engine.sandbox.parties_file import read_parties, register_parties, write_batch


def write(tmp_path, text):
    path = tmp_path / "parties.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_good_rows_register_at_their_owner(tmp_path):
    path = write(
        tmp_path,
        "# parties for a try-out\n"
        "party_id,provider,document_types\n"
        "0106:50000001,econnect,invoices orders\n"
        "iso6523-actorid-upis::0106:50000002,provider-b,\n"
        "\n"
        "0106:50000003,provider-c\n",
    )
    parties = read_parties(path)
    assert [(p.line, p.party_id, p.provider) for p in parties] == [
        (3, "0106:50000001", "econnect"),
        (4, "0106:50000002", "provider-b"),
        (6, "0106:50000003", "provider-c"),
    ]
    model = SandboxModel()
    assert register_parties(model, parties) == {"econnect": 1, "provider-b": 1, "provider-c": 1}
    assert model.owner("0106:50000001") == "econnect"
    assert model.owner("0106:50000002") == "provider-b"
    assert model.owner("0106:50000003") == "provider-c"  # an unknown provider is added
    caps = model.psb_get_config("0106:50000001")["capabilities"]
    assert {name: c["state"] for name, c in caps.items() if c["state"] in ("on", "off")} == {
        "invoices": "on",
        "orders": "on",
        "invoiceResponse": "off",
        "orderOnly": "off",
        "reviews": "off",
    }


def test_semicolons_are_read_too(tmp_path):
    parties = read_parties(write(tmp_path, "party_id;provider\n0106:50000001;ECONNECT\n"))
    assert [(p.party_id, p.provider, p.capabilities) for p in parties] == [("0106:50000001", "econnect", None)]


def test_every_bad_line_is_named_and_nothing_is_kept(tmp_path):
    path = write(
        tmp_path,
        "party_id,provider,document_types\n"
        "0106:50000001,econnect,\n"
        "0106:nonsense,econnect,\n"
        "0106:50000002,,\n"
        "0106:50000003,provider-b,faxes\n"
        "0106:50000004,econnect,faxes\n"
        "0106:50000001,provider-b,\n"
        "0106:50000005,bad/name,\n",
    )
    with pytest.raises(InputError) as caught:
        read_parties(path)
    message = str(caught.value)
    assert "nothing registered" in message
    for line, why in [
        (3, "party_id '0106:nonsense'"),
        (4, "provider is empty"),
        (5, "unknown document type(s) faxes; known: a capability"),
        (6, "unknown capability(ies) faxes for a party at econnect"),
        (7, "party 0106:50000001 is on line 2 already"),
        (8, "provider 'bad/name'"),
    ]:
        assert f"line {line}: {why}" in message, message
    assert "line 2:" not in message


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "empty parties file"),
        ("party,owner\n0106:50000001,econnect\n", "lacks the column(s) party_id, provider"),
        ("party_id,provider,colour\n", "unknown column(s) colour"),
    ],
)
def test_a_bad_header_is_refused(tmp_path, text, why):
    with pytest.raises(InputError, match=r"line \d|empty") as caught:
        read_parties(write(tmp_path, text))
    assert why in str(caught.value)


def test_a_missing_file_is_bad_input(tmp_path):
    with pytest.raises(InputError, match="no such parties file"):
        read_parties(tmp_path / "absent.csv")


def test_the_batch_migrates_each_party_the_right_way(tmp_path):
    path = write(tmp_path, "party_id,provider\n0106:50000001,econnect\n0106:50000002,provider-b\n")
    model = SandboxModel()
    parties = read_parties(path)
    register_parties(model, parties)
    batch = tmp_path / "batch.csv"
    assert write_batch(model, parties, batch) == {"from-econnect": 1, "to-econnect": 1}
    assert stat.S_IMODE(batch.stat().st_mode) == 0o600  # it holds migration keys
    rows = list(csv.DictReader(batch.open(encoding="utf-8")))
    assert rows[0] == {
        "party_id": "0106:50000001",
        "direction": "from-econnect",
        "migration_key": "",
        "new_provider": "provider-b",
    }
    assert rows[1]["direction"] == "to-econnect"
    assert rows[1]["migration_key"] in model.issued_keys()
