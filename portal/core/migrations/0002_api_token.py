"""Hashed, expiring API tokens replace DRF's authtoken table, which kept keys in plaintext.

Existing keys keep working until API_TOKEN_DAYS (NODE_TOKEN_DAYS for a node's) from now, as
hashes; then the plaintext table is dropped and authtoken's migration records forgotten.
"""

import hashlib
from datetime import timedelta

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


def _adopt_authtoken_keys(apps, schema_editor):
    connection = schema_editor.connection
    tables = connection.introspection.table_names()
    if "authtoken_token" not in tables:
        return
    node_users = set()
    with connection.cursor() as cur:
        if "nodes_node" in tables:
            cur.execute("SELECT user_id FROM nodes_node WHERE user_id IS NOT NULL")
            node_users = {row[0] for row in cur.fetchall()}
        cur.execute("SELECT key, user_id FROM authtoken_token")
        rows = cur.fetchall()
    api_token = apps.get_model("core", "ApiToken")
    now = django.utils.timezone.now()
    for key, user_id in rows:
        node = user_id in node_users
        days = settings.NODE_TOKEN_DAYS if node else settings.API_TOKEN_DAYS
        api_token.objects.create(
            user_id=user_id,
            kind="node" if node else "person",
            key_hash=hashlib.sha256(key.encode()).hexdigest(),
            prefix=key[:10],
            created=now,
            expires=now + timedelta(days=days),
        )
    schema_editor.execute("DROP TABLE authtoken_token")
    schema_editor.execute("DELETE FROM django_migrations WHERE app = 'authtoken'")


class Migration(migrations.Migration):
    dependencies = [
        ("core", "0001_initial"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="ApiToken",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "kind",
                    models.CharField(
                        choices=[("person", "person"), ("node", "hospital node")],
                        default="person",
                        max_length=8,
                    ),
                ),
                ("key_hash", models.CharField(max_length=64, unique=True)),
                (
                    "prefix",
                    models.CharField(
                        help_text="the key's first characters, to tell it", max_length=12
                    ),
                ),
                ("created", models.DateTimeField(default=django.utils.timezone.now)),
                ("expires", models.DateTimeField()),
                ("last_used", models.DateTimeField(blank=True, null=True)),
                (
                    "user",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="api_tokens",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={
                "verbose_name": "API token",
                "ordering": ["-created"],
            },
        ),
        migrations.RunPython(_adopt_authtoken_keys, migrations.RunPython.noop),
    ]
