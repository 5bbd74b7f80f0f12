"""The platform commands are the `config` app's, and it loads the Celery app."""
from celery import current_app
from django.core.management import get_commands
from django.db import connection

from tenants.actions import do_ensure_public_tenant
from tenants.models import Domain, Tenant
from tests.conftest import PUBLIC_HOST


def test_start_test_and_setup_platform_are_commands_of_config():
    commands = get_commands()
    assert {name: commands[name] for name in ("start", "test", "setup_platform")} == {
        "start": "config", "test": "config", "setup_platform": "config"}


def test_config_loads_the_celery_app_with_every_apps_periodic_tasks():
    assert current_app.main == "mimamori"
    current_app.loader.import_default_modules()
    assert {"watch.detect_overdue", "outreach.sweep_escalations", "tenants.fan_out"} <= set(current_app.tasks)


def test_ensuring_the_public_tenant_twice_keeps_one_tenant_and_one_host(db):
    connection.set_schema_to_public()
    first = do_ensure_public_tenant(PUBLIC_HOST)
    assert do_ensure_public_tenant(PUBLIC_HOST) == first
    assert Tenant.objects.filter(schema_name="public").count() == 1
    assert list(Domain.objects.filter(domain=PUBLIC_HOST).values_list("tenant__schema_name", flat=True)) == ["public"]
