from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class WatchConfig(AppConfig):
    name = "watch"
    verbose_name = _("Watch-over")

    def ready(self):
        from notifications.actions import subject_filters
        from notifications.events import audience_providers
        from watch.access import area_audiences, notifications_about_visible_residents

        audience_providers.append(area_audiences)
        subject_filters.append(notifications_about_visible_residents)
