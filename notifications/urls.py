"""Included under /notifications/ on tenant hosts (config/urls_tenant.py)."""
from django.urls import path

from notifications import views

app_name = "notifications"

urlpatterns = [
    path("", views.centre, name="centre"),
    path("<int:pk>/read/", views.mark_read, name="mark_read"),
    path("read-all/", views.mark_all_read, name="mark_all_read"),
    path("unread-count/", views.unread_count, name="unread_count"),
    path("preferences/", views.preferences, name="preferences"),
    path("webpush/subscription/", views.webpush_subscription, name="webpush_subscription"),
    path("sw.js", views.service_worker, name="service_worker"),
    path("failed/", views.failed, name="failed"),
    path("line/webhook/", views.line_webhook, name="line_webhook"),
    path("sms/webhook/", views.sms_webhook, name="sms_webhook"),
    path("providers/", views.providers, name="providers"),
]
