from http import HTTPStatus

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.db import connection
from django_tenants.utils import schema_exists

from tenants.accounts.models import User
from tenants.actions import do_deactivate_tenant, do_provision_tenant, do_reactivate_tenant
from tenants.context import tenant_scope
from tenants.models import Domain, Tenant, validate_local_government_code
from tests.conftest import HOST_A, PASSWORD, TenantClient

NEW = dict(
    schema_name="fukuchiyama", domain="fukuchiyama.mimamori.test", name="福知山市",
    kind=Tenant.Kind.MUNICIPALITY, prefecture="京都府", local_government_code="262013",
)


def counts():
    connection.set_schema_to_public()
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_namespace WHERE nspname NOT LIKE 'pg_%%'")
        schemas = cursor.fetchone()[0]
    return Tenant.objects.count(), Domain.objects.count(), schemas


def test_provisioning_creates_schema_domain_and_admin_who_must_change_password(db):
    result = do_provision_tenant(**NEW, admin_username="chief")
    assert schema_exists("fukuchiyama")
    assert Domain.objects.get(domain="fukuchiyama.mimamori.test").tenant == result.tenant
    with tenant_scope("fukuchiyama"):
        admin = User.objects.get(username="chief")
    assert admin.role == User.Role.ADMIN
    assert admin.must_change_password
    assert admin.check_password(result.admin_one_time_password)

    client = TenantClient("fukuchiyama.mimamori.test")
    client.sign_in("chief", result.admin_one_time_password)
    response = client.get("/")
    assert response.status_code == HTTPStatus.FOUND
    assert response["Location"] == "/accounts/password/"


def test_provisioning_the_same_tenant_twice_fails_and_leaves_nothing_half_created(db):
    do_provision_tenant(**NEW)
    before = counts()
    with pytest.raises(ValidationError) as excinfo:
        do_provision_tenant(**NEW)
    assert "schema_name" in excinfo.value.message_dict
    assert "domain" in excinfo.value.message_dict
    assert counts() == before


def test_provisioning_with_a_taken_domain_fails_and_creates_no_schema(db):
    before = counts()
    with pytest.raises(ValidationError) as excinfo:
        do_provision_tenant(**{**NEW, "domain": HOST_A})
    assert excinfo.value.message_dict["domain"] == ["This domain already serves another tenant."]
    assert not schema_exists("fukuchiyama")
    assert counts() == before


def test_a_failure_midway_rolls_back_the_schema_and_the_tenant_row(db, monkeypatch):
    """If anything fails after the schema exists (here: creating the admin), no schema,
    tenant or domain remains."""
    before = counts()

    def explode(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(User.objects, "create_user", explode)
    with pytest.raises(RuntimeError):
        do_provision_tenant(**NEW)
    assert not schema_exists("fukuchiyama")
    assert counts() == before


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("local_government_code", "262112", "The check digit of the local government code is wrong."),
        ("local_government_code", "26211", "The local government code must be 6 digits (全国地方公共団体コード)."),
        ("schema_name", "Public-1", "Use 2 to 41 lowercase letters, digits or underscores, starting with a letter."),
        ("schema_name", "public", "This schema name is reserved."),
        ("prefecture", "京都県", "Value '京都県' is not a valid choice."),
        ("name", "", "This field is required."),
    ],
)
def test_provisioning_bad_input_names_the_field_and_creates_nothing(db, field, value, message):
    before = counts()
    with pytest.raises(ValidationError) as excinfo:
        do_provision_tenant(**{**NEW, field: value})
    assert message in excinfo.value.message_dict[field]
    assert counts() == before


@pytest.mark.parametrize("code", ["262111", "282090", "261009", "130001", "011002"])
def test_real_local_government_codes_pass_the_check_digit(code):
    validate_local_government_code(code)


def test_provision_command_prints_the_one_time_password_and_fails_cleanly_twice(db, capsys):
    args = ["provision_tenant", "maizuru", "--name", "舞鶴市", "--kind", "municipality",
            "--prefecture", "京都府", "--code", "262021", "--domain", "maizuru.mimamori.test"]
    call_command(*args)
    out = capsys.readouterr().out
    assert "Created 舞鶴市 at maizuru.mimamori.test" in out
    password = out.split("One-time password:")[1].split()[0]
    with tenant_scope("maizuru"):
        assert User.objects.get(username="admin").check_password(password)
    with pytest.raises(CommandError, match="schema_name: A tenant with this schema name already exists"):
        call_command(*args)


def test_unknown_host_gets_404(db):
    response = TenantClient("nowhere.mimamori.test").get("/accounts/login/")
    assert response.status_code == HTTPStatus.NOT_FOUND
    assert "Nothing is served at this address." in response.content.decode()


def test_deactivated_tenant_answers_404_and_its_users_are_signed_out(client_a, staff_a, tenant_a):
    client_a.sign_in("staff-a")
    assert client_a.get("/").status_code == HTTPStatus.OK
    assert do_deactivate_tenant(tenant_a)
    assert client_a.get("/").status_code == HTTPStatus.NOT_FOUND
    assert TenantClient(HOST_A).post(
        "/accounts/login/", {"username": "staff-a", "password": PASSWORD}
    ).status_code == HTTPStatus.NOT_FOUND
    do_reactivate_tenant(tenant_a)
    # The old session was deleted with the deactivation: signed out, not resumed.
    response = client_a.get("/")
    assert response.status_code == HTTPStatus.FOUND
    assert response["Location"].startswith("/accounts/login/")


def test_operator_console_lists_tenants_and_provisions_one(public_client, operator, tenant_a):
    public_client.sign_in("operator")
    response = public_client.get("/")
    assert response.status_code == HTTPStatus.OK
    assert "テスト市A" in response.content.decode()
    response = public_client.post("/", {**NEW, "admin_username": "admin", "admin_email": ""})
    assert response.status_code == HTTPStatus.OK
    assert "福知山市 is ready at fukuchiyama.mimamori.test." in response.content.decode()
    assert schema_exists("fukuchiyama")


def test_operator_console_rejects_a_taken_schema_with_400_and_a_message(public_client, operator, tenant_a):
    public_client.sign_in("operator")
    japanese = TenantClient(public_client.host, language="ja")
    japanese.cookies = public_client.cookies
    before = counts()
    response = public_client.post("/", {**NEW, "schema_name": "tenant_a", "domain": "x.mimamori.test",
                                           "admin_username": "admin"})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "A tenant with this schema name already exists." in response.content.decode()
    response = japanese.post("/", {**NEW, "schema_name": "tenant_a", "domain": "x.mimamori.test",
                                     "admin_username": "admin"})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "このスキーマ名のテナントは既に存在します。" in response.content.decode()
    assert counts() == before


def test_operator_has_no_route_to_any_tenants_people(public_client, operator, staff_a):
    public_client.sign_in("operator")
    for path in ["/accounts/users/", "/ws/events/"]:
        assert public_client.get(path).status_code == HTTPStatus.NOT_FOUND
    # And an operator account does not exist on a tenant host.
    client = TenantClient(HOST_A)
    response = client.post("/accounts/login/", {"username": "operator", "password": PASSWORD})
    assert response.status_code == HTTPStatus.OK
    assert client.get("/").status_code == HTTPStatus.FOUND


def test_tenant_users_cannot_use_the_operator_console(public_client, staff_a):
    response = public_client.post("/accounts/login/", {"username": "staff-a", "password": PASSWORD})
    assert response.status_code == HTTPStatus.OK  # unknown on the public host: same error
    assert public_client.get("/").status_code == HTTPStatus.FOUND


HOST_NAME_MESSAGE = ("Enter a host name such as mimamori.example.jp: letters, digits, hyphens and dots, "
                     "without a port, a path or a final dot.")


@pytest.mark.parametrize("domain", [
    "fukuchiyama.mimamori.test:8000", "fukuchiyama.mimamori.test/admin", "fukuchiyama.mimamori.test.",
    "-fukuchiyama.mimamori.test", "fuku..mimamori.test", "fuku_chiyama.mimamori.test", "fukuchiyama",
    "福知山.mimamori.test", "192.168.0.1", "fuku chiyama.mimamori.test", "",
])
def test_provisioning_refuses_a_domain_that_is_not_a_host_name(db, domain):
    before = counts()
    with pytest.raises(ValidationError) as excinfo:
        do_provision_tenant(**{**NEW, "domain": domain})
    assert excinfo.value.message_dict["domain"] == [HOST_NAME_MESSAGE]
    assert counts() == before


def test_provisioning_stores_the_domain_lower_cased_and_serves_it(db):
    result = do_provision_tenant(**{**NEW, "domain": " Fukuchiyama.Mimamori.TEST "})
    assert result.domain == "fukuchiyama.mimamori.test"
    assert list(Domain.objects.filter(tenant=result.tenant).values_list("domain", flat=True)) == [
        "fukuchiyama.mimamori.test"]
    assert TenantClient("FUKUCHIYAMA.mimamori.test").get("/accounts/login/").status_code == HTTPStatus.OK
    with pytest.raises(ValidationError) as excinfo:
        do_provision_tenant(**{**NEW, "schema_name": "other", "domain": "FUKUCHIYAMA.mimamori.test"})
    assert excinfo.value.message_dict["domain"] == ["This domain already serves another tenant."]


def test_console_refuses_a_bad_domain_with_400_in_japanese_and_english(public_client, operator):
    public_client.sign_in("operator")
    japanese = TenantClient(public_client.host, language="ja")
    japanese.cookies = public_client.cookies
    before = counts()
    data = {**NEW, "domain": "fukuchiyama.mimamori.test:8000", "admin_username": "admin"}
    response = public_client.post("/", data)
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert HOST_NAME_MESSAGE in response.content.decode()
    response = japanese.post("/", data)
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "ホスト名を入力してください" in response.content.decode()
    assert counts() == before


def test_console_gives_a_schema_with_underscores_a_valid_default_host(public_client, operator, settings):
    settings.TENANT_BASE_DOMAIN = "mimamori.test"
    public_client.sign_in("operator")
    response = public_client.post("/", {**NEW, "schema_name": "minami_yamashiro", "domain": "",
                                        "admin_username": "admin"})
    assert response.status_code == HTTPStatus.OK
    assert Domain.objects.filter(domain="minami-yamashiro.mimamori.test").exists()
