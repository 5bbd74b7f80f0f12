from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class TenantsConfig(AppConfig):
    name = "tenants"
    verbose_name = _("Tenants")

    def ready(self):
        # Binds shared tasks to the project's Celery app in every process (web too).
        import config.celery  # noqa: F401
