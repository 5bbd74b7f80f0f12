from django.db import migrations, models


def to_targets(apps, schema_editor):
    """A copied step named one target ({"target", "user"}); it now names several, notified
    together ({"targets", "users"})."""
    Concern = apps.get_model("outreach", "Concern")
    for concern in Concern.objects.exclude(steps=[]).only("steps").iterator(chunk_size=500):
        if all("targets" in step for step in concern.steps):
            continue
        concern.steps = [step if "targets" in step else {
            "targets": [step["target"]], "users": [step["user"]] if step.get("user") else [],
            "wait_minutes": step["wait_minutes"]} for step in concern.steps]
        concern.save(update_fields=["steps"])


class Migration(migrations.Migration):

    dependencies = [
        ('outreach', '0002_alter_concernevent_kind'),
    ]

    operations = [
        migrations.AlterModelOptions(
            name='escalationstep',
            options={'ordering': ['order', 'pk']},
        ),
        migrations.AddField(
            model_name='concern',
            name='reached_nobody',
            field=models.BooleanField(default=False),
        ),
        migrations.AlterField(
            model_name='concernevent',
            name='kind',
            field=models.CharField(choices=[('opened', 'Opened'), ('signal', 'Another signal'), ('notified', 'Notified'), ('exhausted', 'Escalation ran out of steps'), ('acknowledged', 'Acknowledged'), ('resolved', 'Resolved'), ('dismissed', 'Dismissed'), ('refused', 'Refused acknowledgement'), ('message', 'Message'), ('skipped', 'Step skipped'), ('unreached', 'Nobody could be notified')], max_length=20),
        ),
        migrations.RunPython(to_targets, migrations.RunPython.noop),
    ]
