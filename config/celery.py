import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("mimamori")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["tenants.accounts", "notifications", "watch", "outreach"])

# Only one beat may run: two would send every periodic task twice.
app.conf.beat_schedule = {
    "clear-expired-sessions": {
        "task": "tenants.fan_out",
        "schedule": 60 * 60,
        "args": ("tenants.accounts.tasks.clear_expired_sessions",),
    },
}
