"""A past drill for the demo tenants, so that the README's drill can be read next to the
previous one on the report (outreach.reports.comparison). Only for demo data: the
answers are made up, written directly as the record of a drill that ran a month ago."""
import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone, translation

from outreach.models import Answer, Ask, SafetyCheck
from outreach.safety import default_question
from tenants.accounts.models import User
from watch.models import ContactLog, Outcome, Resident
from watch.reach import channels_for

logger = logging.getLogger(__name__)

DEMO_TITLE = "前回の訓練（デモ）"
# Minutes after the start at which each tenth of those answering answered: most within
# minutes (as drills here and elsewhere find), a tail to an hour and a half.
ANSWER_MINUTES = [1, 2, 2, 3, 5, 8, 12, 20, 35, 80]
SILENT_EVERY = 6  # one in six never answers


def do_load_demo_drill() -> SafetyCheck | None:
    """The demo's previous drill in the current tenant, once (None if it exists or the
    tenant has no resident yet)."""
    if SafetyCheck.objects.filter(title=DEMO_TITLE).exists():
        return None
    residents = list(Resident.objects.filter(status=Resident.Status.ACTIVE).order_by("pk"))
    admin = User.objects.filter(is_active=True, role=User.Role.ADMIN).order_by("pk").first()
    if not residents or admin is None:
        return None
    started = timezone.now() - timedelta(days=30)
    with translation.override(settings.LANGUAGE_CODE):
        question = default_question()
    with transaction.atomic():
        check = SafetyCheck.objects.create(
            title=DEMO_TITLE, question=question, kind=SafetyCheck.Kind.DRILL, state=SafetyCheck.State.CLOSED,
            channels=["line", "sms", "voice"], silence_minutes=[10, 30, 60], deadline=started + timedelta(hours=2),
            created_by=admin, started_by=admin, started_at=started, closed_by=admin,
            closed_at=started + timedelta(hours=2), followed_up_at=started + timedelta(hours=2))
        asks = []
        for n, resident in enumerate(residents):
            plan = channels_for(resident, check.channels)
            silent = n % SILENT_EVERY == SILENT_EVERY - 1 or not plan
            at = started + timedelta(minutes=ANSWER_MINUTES[n % len(ANSWER_MINUTES)], seconds=n % 50)
            asks.append(Ask(
                kind=Ask.Kind.SAFETY, safety_check=check, resident=resident, area_id=resident.area_id,
                household_key=resident.household_key, plan=plan,
                state=Ask.State.CLOSED if silent else Ask.State.ANSWERED, first_sent_at=started if plan else None,
                reached=bool(plan), answer="" if silent else Answer.FINE, answered_at=None if silent else at,
                answered_via="" if silent else plan[0]))
        # History: the answers are contacts of that day, written as such, so applying
        # answers does not log them again (they move no rhythm of today).
        answered = [ask for ask in asks if ask.answer]
        contacts = ContactLog.objects.bulk_create([ContactLog(
            resident=ask.resident, occurred_at=ask.answered_at, channel=ask.answered_via, outcome=Outcome.FINE,
            note=f"安否確認「{check.title}」: 無事") for ask in answered], batch_size=1000)
        for ask, contact in zip(answered, contacts, strict=True):
            ask.contact = contact
        Ask.objects.bulk_create(asks, batch_size=1000)
    logger.info("demo drill %s made with %s asks", check.pk, len(asks))
    return check
