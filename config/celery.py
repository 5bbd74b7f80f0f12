import os

from celery import Celery
from celery.schedules import crontab
from celery.signals import worker_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("mimamori")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["tenants.accounts", "notifications", "watch", "outreach"])

# Only one beat may run: two would send every periodic task twice.
app.conf.beat_schedule = {
    # A resident who goes overdue is marked within seconds (see watch.tasks).
    "detect-overdue": {"task": "watch.detect_overdue", "schedule": 3.0, "options": {"expires": 10}},
    "sweep-wakeups": {"task": "watch.sweep_wakeups", "schedule": 15 * 60},
    # Escalation steps run when due even if their task was lost (see outreach.tasks).
    "sweep-escalations": {"task": "outreach.sweep_escalations", "schedule": 5.0, "options": {"expires": 10}},
    # Overdue residents whose concern a failed hook left out get it (see outreach.receivers).
    # Imports whose task was lost are handed on again; stale uploads are deleted.
    "sweep-import-jobs": {"task": "tenants.fan_out", "schedule": 5 * 60,
                          "args": ("watch.tasks.sweep_import_jobs",), "options": {"expires": 240}},
    "repair-overdue-concerns": {"task": "tenants.fan_out", "schedule": 5 * 60,
                                "args": ("outreach.tasks.repair_overdue_concerns",), "options": {"expires": 240}},
    "resume-ended-pauses": {"task": "tenants.fan_out", "schedule": 60 * 60,
                            "args": ("watch.tasks.resume_ended_pauses",)},
    "clear-expired-sessions": {
        "task": "tenants.fan_out",
        "schedule": 60 * 60,
        "args": ("tenants.accounts.tasks.clear_expired_sessions",),
    },
    # Questions to residents go out, move on after silence, and held checks start when due,
    # even if their task was lost (see outreach.asking); the wakeup is rebuilt from the asks.
    "sweep-asking": {"task": "outreach.sweep_asking", "schedule": 2.0, "options": {"expires": 10}},
    "rebuild-asking-wakeup": {"task": "tenants.fan_out", "schedule": 60.0,
                              "args": ("outreach.tasks.rebuild_asking_wakeup",), "options": {"expires": 50}},
    # Daily check-ins due this minute are asked at its start; unanswered ones are logged
    # (see outreach.checkins). A missed minute is caught up by the next run.
    "daily-checkins": {"task": "tenants.fan_out", "schedule": crontab(minute="*"),
                       "args": ("outreach.tasks.run_daily_checkins",), "options": {"expires": 50}},
    # Safety checks past their deadline (or closed): silent residents become visits (see outreach.safety).
    "follow-up-safety-checks": {"task": "tenants.fan_out", "schedule": 60.0,
                                "args": ("outreach.tasks.follow_up_safety_checks",), "options": {"expires": 50}},
    # Re-drives notifications whose delivery message was lost (dead worker, flushed Redis).
    "deliveries": {"task": "tenants.fan_out", "schedule": 60.0,
                   "args": ("notifications.tasks.sweep_deliveries",), "options": {"expires": 50}},
}


@worker_init.connect
def preload_provider_clients(**kwargs):
    """Import the providers' client libraries once in the worker's main process, before
    it forks its pool: otherwise each new pool process spends about a second importing
    line-bot-sdk on its first LINE message, on the way to the first notification."""
    import linebot.v3.messaging  # noqa: F401
    import pywebpush  # noqa: F401
    import twilio.rest  # noqa: F401
