"""The sandbox's world model, in process, on a ManualClock."""

from __future__ import annotations

import pytest

from migration_engine.clock import ManualClock
from migration_engine.keys import generate_key, key_problem
from migration_engine.sandbox import ECONNECT, SandboxConfig, SandboxModel
from migration_engine.sandbox.catalog import BIS3_CREDIT_NOTE, BIS3_INVOICE
from migration_engine.sandbox.common import SandboxError

PARTY = "0106:12345678"
OTHER = "0106:87654321"
EC_AP = SandboxConfig().access_point_url
B_AP = "https://ap.provider-b.example/as4"


def make(**overrides: object) -> tuple[SandboxModel, ManualClock]:
    clock = ManualClock()
    return SandboxModel(SandboxConfig(**overrides), clock), clock  # type: ignore[arg-type]


def urls(model: SandboxModel, party: str = PARTY) -> set[str]:
    return {o["url"] for o in model.delivery_options([party])}


def status_of(call: object) -> int:
    with pytest.raises(SandboxError) as info:
        call()  # type: ignore[operator]
    return info.value.status


# -- SML: PrepareToMigrate --------------------------------------------------------------------


def test_prepare_by_econnect_returns_a_valid_key_and_marks_the_party() -> None:
    model, _ = make()
    model.register(PARTY, ECONNECT)
    key = model.psb_prepare_to_migrate("NL:KVK:12345678")
    assert key_problem(key) is None
    info = model.party(PARTY)
    assert info is not None and info["inMigration"] is True
    assert info["migration"]["key"] == key and info["migration"]["oldSmp"] == ECONNECT


def test_prepare_only_by_the_current_owner() -> None:
    model, _ = make()
    model.register(PARTY, "provider-b")
    assert status_of(lambda: model.psb_prepare_to_migrate(PARTY)) == 404  # not eConnect's
    model.register(OTHER, ECONNECT)
    with pytest.raises(SandboxError) as info:
        model.provider_prepare("provider-b", OTHER)
    assert info.value.status == 403 and info.value.code == "ERR-101"
    assert status_of(lambda: model.provider_prepare("provider-b", "0106:11112222")) == 404  # unknown


def test_repeat_prepare_overwrites_the_key_by_default() -> None:
    model, _ = make()
    model.register(PARTY, "provider-b")
    first = model.provider_prepare("provider-b", PARTY)
    second = model.provider_prepare("provider-b", PARTY)
    assert first != second
    assert status_of(lambda: model.psb_put_config(PARTY, {"migration": {"key": first}})) == 400
    model.psb_put_config(PARTY, {"migration": {"key": second}})
    assert model.owner(PARTY) == ECONNECT


def test_repeat_prepare_same_returns_the_stored_key_until_it_expires() -> None:
    model, clock = make(repeat_prepare="same", key_ttl_s=3600)
    model.register(PARTY, ECONNECT)
    first = model.psb_prepare_to_migrate(PARTY)
    assert model.psb_prepare_to_migrate(PARTY) == first
    clock.advance(3601)
    assert model.psb_prepare_to_migrate(PARTY) != first


# -- SML: Migrate (migration to eConnect through PUT config) ----------------------------------


def test_migration_in_with_the_right_key() -> None:
    model, _ = make()
    model.register(PARTY, "provider-b")
    key = model.provider_prepare("provider-b", PARTY)
    config = model.psb_put_config("NL:KVK:12345678", {"migration": {"key": key}})
    assert config["id"] == PARTY
    assert config["capabilities"]["invoices"]["state"] == "inherited => on"
    assert model.owner(PARTY) == ECONNECT
    assert model.psb_get_config(PARTY)["id"] == PARTY


def test_migration_key_format_is_checked_first() -> None:
    model, _ = make(key_reject_status=422)
    model.register(PARTY, "provider-b")
    with pytest.raises(SandboxError) as info:
        model.psb_put_config(PARTY, {"migration": {"key": "abc123-def456-ghi789"}})
    assert info.value.status == 400 and "ERR-106" in info.value.message
    assert "abc123" not in info.value.message


@pytest.mark.parametrize("status", [400, 403, 404, 422])
def test_wrong_unknown_expired_and_used_keys_get_the_configured_status(status: int) -> None:
    model, clock = make(key_reject_status=status, key_ttl_s=600)
    model.register(PARTY, "provider-b")
    # no migration record at all
    assert status_of(lambda: model.psb_put_config(PARTY, {"migration": {"key": generate_key()}})) == status
    key = model.provider_prepare("provider-b", PARTY)
    # wrong key
    assert status_of(lambda: model.psb_put_config(PARTY, {"migration": {"key": generate_key()}})) == status
    # expired key
    clock.advance(601)
    with pytest.raises(SandboxError) as info:
        model.psb_put_config(PARTY, {"migration": {"key": key}})
    assert info.value.status == status and "Request a new key" in info.value.message
    # unknown party
    assert status_of(lambda: model.psb_put_config(OTHER, {"migration": {"key": key}})) == status
    # a used key: the party went to eConnect and then away to provider-b again
    key = model.provider_prepare("provider-b", PARTY)
    model.psb_put_config(PARTY, {"migration": {"key": key}})
    out = model.psb_prepare_to_migrate(PARTY)
    model.provider_migrate("provider-b", PARTY, out)
    assert status_of(lambda: model.psb_put_config(PARTY, {"migration": {"key": key}})) == status
    assert model.owner(PARTY) == "provider-b"


def test_replaying_a_successful_migration_in_is_ok() -> None:
    model, _ = make()
    model.register(PARTY, "provider-b")
    key = model.provider_prepare("provider-b", PARTY)
    first = model.psb_put_config(PARTY, {"migration": {"key": key}})
    again = model.psb_put_config(PARTY, {"migration": {"key": key}})
    assert again["id"] == first["id"] and model.owner(PARTY) == ECONNECT


def test_migration_in_may_carry_capabilities_and_business_card() -> None:
    model, _ = make()
    model.register(PARTY, "provider-b")
    key = model.provider_prepare("provider-b", PARTY)
    body = {"migration": {"key": key}, "capabilities": {"orders": "on"}, "businessCard": {"names": "ACME"}}
    config = model.psb_put_config(PARTY, body)
    assert config["capabilities"]["orders"]["state"] == "on"
    assert config["businessCard"]["names"]["value"] == "ACME"


def test_a_bad_capability_changes_nothing() -> None:
    model, _ = make()
    model.register(PARTY, "provider-b")
    key = model.provider_prepare("provider-b", PARTY)
    with pytest.raises(SandboxError) as info:
        model.psb_put_config(PARTY, {"migration": {"key": key}, "capabilities": {"telepathy": "on"}})
    assert info.value.status == 400
    assert model.owner(PARTY) == "provider-b"


# -- config without migration -----------------------------------------------------------------


def test_put_config_registers_a_new_party_and_refuses_another_providers() -> None:
    model, _ = make()
    config = model.psb_put_config(OTHER, {"capabilities": {"invoiceResponse": "on"}})
    assert config["capabilities"]["invoiceResponse"]["state"] == "on"
    assert model.owner(OTHER) == ECONNECT
    model.register(PARTY, "provider-b")
    with pytest.raises(SandboxError) as info:
        model.psb_put_config(PARTY, {"capabilities": {"invoices": "on"}})
    assert info.value.status == 409 and "another SMP" in info.value.message


def test_capability_states_resolve() -> None:
    model, _ = make()
    model.register(PARTY, ECONNECT)
    caps = model.psb_put_config(
        PARTY, {"capabilities": {"invoices": "off", "orders": {"state": "inherited"}}}
    )["capabilities"]
    assert caps["invoices"]["state"] == "off" and caps["orders"]["state"] == "inherited => off"
    assert model.delivery_options([PARTY]) and all(
        o["documentTypeId"].endswith("mlr:3::2.1") for o in model.delivery_options([PARTY])
    )
    assert status_of(lambda: model.psb_put_config(PARTY, {"capabilities": {"invoices": "maybe"}})) == 400


def test_delete_config_refused_while_a_migration_is_planned() -> None:
    model, clock = make(propagation_delay_s=30)
    model.register(PARTY, ECONNECT)
    model.psb_prepare_to_migrate(PARTY)
    assert status_of(lambda: model.psb_delete_config(PARTY)) == 409
    model.register(OTHER, ECONNECT)
    model.psb_delete_config(OTHER)
    assert status_of(lambda: model.psb_get_config(OTHER)) == 404
    assert urls(model, OTHER) == {EC_AP}  # DNS still points at eConnect for a while
    clock.advance(30)
    assert model.delivery_options([OTHER]) == []
    assert status_of(lambda: model.psb_delete_config(OTHER)) == 404


# -- providers, takeovers, DNS ----------------------------------------------------------------


def test_provider_takeover_removes_econnect_config_but_keeps_hooks_and_permissions() -> None:
    model, _ = make()
    model.register(PARTY, ECONNECT)
    model.put_hook(PARTY, {"name": "mail", "action": "mailto:a@example.com", "topics": ["InvoiceReceived"]})
    model.put_user_party("sandbox-user", {"id": PARTY, "permissions": {"canSendDocument": True}})
    key = model.psb_prepare_to_migrate(PARTY)
    model.provider_migrate("provider-b", PARTY, key)
    assert model.owner(PARTY) == "provider-b"
    assert status_of(lambda: model.psb_get_config(PARTY)) == 404
    assert len(model.list_hooks(PARTY)) == 1
    assert model.list_user_parties("sandbox-user")[0]["id"] == PARTY
    info = model.party(PARTY)
    assert info is not None and info["inMigration"] is False and info["migration"]["migrated"] is True


def test_dns_follows_the_owner_after_the_propagation_delay() -> None:
    model, clock = make(propagation_delay_s=120)
    model.register(PARTY, "provider-b")
    assert urls(model) == {B_AP}
    model.psb_put_config(PARTY, {"migration": {"key": model.provider_prepare("provider-b", PARTY)}})
    assert model.owner(PARTY) == ECONNECT
    assert urls(model) == {B_AP} and model.dns_smp(PARTY) == "provider-b"
    clock.advance(119)
    assert urls(model) == {B_AP}
    clock.advance(1)
    assert urls(model) == {EC_AP} and model.dns_smp(PARTY) == ECONNECT


def test_outbound_dns_keeps_showing_econnect_during_propagation() -> None:
    model, clock = make(propagation_delay_s=60)
    model.register(PARTY, ECONNECT)
    model.provider_migrate("provider-b", PARTY, model.psb_prepare_to_migrate(PARTY))
    assert urls(model) == {EC_AP}  # senders still reach eConnect's AP: nothing is lost
    clock.advance(60)
    assert urls(model) == {B_AP}


def test_handoff_takes_over_after_the_takeover_delay() -> None:
    model, clock = make(takeover_delay_s=300)
    model.register(PARTY, ECONNECT)
    model.provider_handoff("provider-b", PARTY, model.psb_prepare_to_migrate(PARTY))
    clock.advance(299)
    assert model.owner(PARTY) == ECONNECT
    clock.advance(1)
    assert model.owner(PARTY) == "provider-b"
    assert model.provider_log()[-1]["outcome"] == "migrated"


def test_handoff_with_a_stale_key_fails_at_the_provider() -> None:
    model, _ = make()
    model.register(PARTY, ECONNECT)
    stale = model.psb_prepare_to_migrate(PARTY)
    model.psb_prepare_to_migrate(PARTY)  # overwrites
    model.provider_handoff("provider-b", PARTY, stale)
    assert model.owner(PARTY) == ECONNECT
    assert model.provider_log()[-1]["outcome"].startswith("failed: [ERR-101]")


def test_auto_takeover_after_prepare() -> None:
    model, clock = make(auto_takeover_after_s=600)
    model.register(PARTY, ECONNECT)
    model.psb_prepare_to_migrate(PARTY)
    clock.advance(599)
    assert model.owner(PARTY) == ECONNECT
    clock.advance(1)
    assert model.owner(PARTY) == "provider-b"


def test_provider_registration_conflicts() -> None:
    model, _ = make()
    model.provider_register("provider-b", PARTY)
    model.provider_register("provider-b", PARTY)  # idempotent
    assert status_of(lambda: model.provider_register("nobody", OTHER)) == 404
    model.add_provider("provider-c", "https://ap.c.example/as4")
    assert status_of(lambda: model.provider_register("provider-c", PARTY)) == 409


# -- delivery options -------------------------------------------------------------------------


def test_delivery_options_filter_by_document_type_and_family() -> None:
    model, _ = make()
    model.register(PARTY, ECONNECT)
    model.register(OTHER, "provider-b")
    credit = BIS3_CREDIT_NOTE.document_type_id
    both = model.delivery_options([PARTY, OTHER], [credit])
    assert [(o["partyId"], o["url"]) for o in both] == [(PARTY, EC_AP), (OTHER, B_AP)]
    assert all(o["documentTypeId"] == credit and o["protocol"] == "As4" for o in both)
    invoices = model.delivery_options([PARTY], document_family="invoice")
    assert {o["documentTypeId"] for o in invoices} >= {BIS3_INVOICE.document_type_id, credit}
    assert model.delivery_options([PARTY], preferred_document_type_id=credit)[0]["documentTypeId"] == credit
    assert model.delivery_options(["0106:11112222"]) == []
    assert status_of(lambda: model.delivery_options(["nonsense"])) == 400


# -- hooks, users, enrollment -----------------------------------------------------------------


def test_hooks_upsert_by_id_or_name() -> None:
    model, _ = make()
    hook = model.put_hook(
        PARTY, {"name": "h", "action": "https://example.com/h", "topics": ["InvoiceReceived"]}
    )
    same = model.put_hook(PARTY, {"name": "h", "action": "https://example.com/h2", "topics": []})
    assert same["id"] == hook["id"] and same["action"].endswith("h2")
    by_id = model.put_hook(PARTY, {"id": hook["id"], "action": "mailto:x@example.com"})
    assert by_id["id"] == hook["id"] and len(model.list_hooks(PARTY)) == 1
    assert status_of(lambda: model.put_hook(PARTY, {"id": "nope", "action": "mailto:x@example.com"})) == 404
    assert status_of(lambda: model.put_hook(PARTY, {"action": "ftp://x"})) == 400
    model.delete_hook(PARTY, hook["id"])
    assert model.list_hooks(PARTY) == []
    assert status_of(lambda: model.delete_hook(PARTY, hook["id"])) == 404


def test_user_party_authorisations() -> None:
    model, _ = make()
    echo = model.put_user_party(
        "u1", {"id": "NL:KVK:12345678", "name": "p", "permissions": {"canManageHook": True}}
    )
    assert echo["id"] == PARTY and echo["permissions"]["canManageHook"] is True
    assert echo["permissions"]["canSendDocument"] is False
    assert model.list_user_parties("u1") == [echo]
    assert (
        status_of(lambda: model.put_user_party("u1", {"id": PARTY, "permissions": {"canFly": True}})) == 400
    )
    model.delete_user_party("u1", PARTY)
    assert model.list_user_parties("u1") == []
    assert status_of(lambda: model.delete_user_party("u1", PARTY)) == 404


def test_enroll_newer_shape() -> None:
    model, _ = make()
    body = {
        "services": {
            "peppol": {
                "capabilities": {"invoices": "on", "orderOnly": "inherited"},
                "businessCard": {
                    "names": "Company B.V.",
                    "geoInfo": "Utrecht, NL",
                    "email": "info@example.com",
                },
            }
        },
        "partyAuthorizations": [{"userId": "u2", "permissions": {"canSendDocument": True}}],
    }
    assert model.enroll(PARTY, body) == body
    config = model.psb_get_config(PARTY)
    assert config["capabilities"]["invoices"]["state"] == "on"
    assert config["businessCard"]["address"]["value"] == "Utrecht, NL"
    assert model.list_user_parties("u2")[0]["permissions"]["canSendDocument"] is True


def test_enroll_psb_docs_shape_and_refusal_for_another_provider() -> None:
    model, _ = make()
    body = {
        "services": [{"name": "peppolService", "config": {"capabilities": {"reviews": {"state": "on"}}}}],
        "users": {"u3": {"canReceiveDocument": True}},
    }
    model.enroll(PARTY, body)
    assert model.psb_get_config(PARTY)["capabilities"]["reviews"]["state"] == "on"
    model.register(OTHER, "provider-b")
    assert status_of(lambda: model.enroll(OTHER, body)) == 409


# -- config knobs -----------------------------------------------------------------------------


def test_vary_seed_is_deterministic_and_varies() -> None:
    picks = {
        (c.key_reject_status, c.repeat_prepare)
        for c in (SandboxConfig(vary_seed=s).effective() for s in range(40))
    }
    assert len(picks) > 3
    assert SandboxConfig(vary_seed=7).effective() == SandboxConfig(vary_seed=7).effective()
    assert all(status in (400, 403, 404, 422) for status, _ in picks)


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        SandboxConfig(key_reject_status=500)
    with pytest.raises(ValueError):
        SandboxConfig(error_rate=2.0)
    with pytest.raises(ValueError):
        SandboxConfig(repeat_prepare="sometimes")  # type: ignore[arg-type]
    assert "clientSecret" not in SandboxConfig().public()


def test_seed_parties() -> None:
    model, _ = make(seed_parties=((PARTY, ECONNECT), (OTHER, "provider-b")))
    assert model.owner(PARTY) == ECONNECT and model.owner(OTHER) == "provider-b"
    assert [p["partyId"] for p in model.parties()] == [PARTY, OTHER]


def test_tokens_expire_on_the_model_clock() -> None:
    model, clock = make(token_ttl_s=60)
    form = {
        "grant_type": "password",
        "client_id": "sandbox-client",
        "client_secret": "sandbox-secret",
        "username": "sandbox-user",
        "password": "sandbox-password",
        "scope": "ap",
    }
    answer = model.tokens.issue(form)
    token = str(answer["access_token"])
    assert answer["expires_in"] == 60 and model.tokens.valid(token)
    clock.advance(60)
    assert not model.tokens.valid(token)
