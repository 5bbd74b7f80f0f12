from django.apps import AppConfig


class WiringConfig(AppConfig):
    """The project's wiring as an app: the platform commands (start, test, setup_platform)
    and the Celery app, so that no other app needs to import `config`."""

    name = "config"
    verbose_name = "mimamori"

    def ready(self):
        # Binds the apps' shared tasks to the project's Celery app in every process (web too).
        from config import celery  # noqa: F401
