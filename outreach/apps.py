from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class OutreachConfig(AppConfig):
    name = "outreach"
    verbose_name = _("Outreach")

    def ready(self):
        from notifications.hooks import answerable_kinds, reply_received
        from outreach import receivers, replies

        reply_received.connect(receivers.acknowledge_by_reply, dispatch_uid="outreach-ack-by-reply")
        answerable_kinds.add(replies.NOTIFICATION_KIND)

        from outreach import views, views_reach
        from watch.views import resident_panels

        resident_panels.extend([views.resident_panel, views_reach.resident_panel])
