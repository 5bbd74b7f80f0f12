"""API tokens stored as hashes; the clear-text keys of DRF's authtoken table are erased."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('accounts', '0001_initial'),
    ]

    operations = [
        migrations.CreateModel(
            name='ApiToken',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('key_hash', models.CharField(max_length=64, unique=True)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('expires_at', models.DateTimeField()),
                ('user', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='api_tokens', to=settings.AUTH_USER_MODEL)),
            ],
        ),
        # The old keys were stored in clear: none of them authenticates any more.
        migrations.RunSQL(
            "DO $$ BEGIN IF to_regclass('authtoken_token') IS NOT NULL THEN DELETE FROM authtoken_token; END IF; END $$",
            migrations.RunSQL.noop,
        ),
    ]
