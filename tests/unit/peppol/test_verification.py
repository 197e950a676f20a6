"""What the network check asks of the Peppol network: which SMP is eConnect's, and which
document types a party's capabilities require."""

from __future__ import annotations

import pytest

from migration_engine.peppol.verification import CORE_DOCUMENT_TYPES, required_document_types, smp_matches


@pytest.mark.parametrize(
    ("url", "expected", "match"),
    [
        ("https://smp.econnect.eu/", "smp.econnect.eu", True),
        ("http://SMP.econnect.eu./x", "smp.econnect.eu", True),
        ("https://smp.other.eu/", "smp.econnect.eu", False),
        ("http://127.0.0.1:4000/smp/econnect", "127.0.0.1:4000/smp/econnect", True),
        ("http://127.0.0.1:4000/smp/econnect/", "http://127.0.0.1:4000/smp/econnect", True),
        ("http://127.0.0.1:4000/smp/provider-b", "127.0.0.1:4000/smp/econnect", False),
        ("http://127.0.0.1:4000/smp/econnect2", "127.0.0.1:4000/smp/econnect", False),
        ("http://127.0.0.1:4001/smp/econnect", "127.0.0.1:4000/smp/econnect", False),
        ("http://econnect.smp.sandbox", "econnect.smp.sandbox", True),
        ("http://smp.econnect.eu", "", False),
    ],
)
def test_econnects_smp_is_matched_by_host_port_and_whole_path_segments(url, expected, match):
    assert smp_matches(url, expected) is match


def test_only_capabilities_that_are_on_require_document_types():
    caps = {"invoices": "on", "orders": "inherited", "reviews": "off", "orderOnly": "on", "unknown": "on"}
    assert required_document_types(caps) == [*CORE_DOCUMENT_TYPES["invoices"], *CORE_DOCUMENT_TYPES["orderOnly"]]
    assert required_document_types({}) == []
