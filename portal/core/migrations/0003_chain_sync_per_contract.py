"""One event cursor per followed contract, named after its deployment, instead of one
``registry`` row for both.

The old row's cursor covered every followed contract's logs up to its block, so both new
rows start from it: nothing is mirrored twice and nothing skipped. (A contract deployed
after that block only has its cursor scan a few empty blocks.) Its counters stay with the
ConsortiumRegistry row.
"""

from django.db import migrations, models

NAMES = ("ConsortiumRegistry", "DatasetRegistry")


def split(apps, schema_editor):
    state_model = apps.get_model("core", "ChainSyncState")
    old = state_model.objects.filter(name="registry").first()
    if old is None:
        return
    for name in NAMES:
        state_model.objects.update_or_create(
            name=name,
            defaults={
                "last_block": old.last_block,
                "last_block_hash": old.last_block_hash,
                "head_block": old.head_block,
                "events_processed": old.events_processed if name == NAMES[0] else 0,
                "reorgs": old.reorgs if name == NAMES[0] else 0,
                "last_error": old.last_error,
                "last_run_at": old.last_run_at,
                "last_success_at": old.last_success_at,
            },
        )
    old.delete()


def join(apps, schema_editor):
    """Back to one row: the lower of the two cursors, so no event is skipped."""
    state_model = apps.get_model("core", "ChainSyncState")
    rows = list(state_model.objects.filter(name__in=NAMES))
    if not rows:
        return
    behind = min(rows, key=lambda r: -1 if r.last_block is None else r.last_block)
    state_model.objects.filter(name__in=NAMES).exclude(pk=behind.pk).delete()
    behind.name = "registry"
    behind.events_processed = sum(r.events_processed for r in rows)
    behind.save()


class Migration(migrations.Migration):
    dependencies = [("core", "0002_api_token")]

    operations = [
        migrations.RunPython(split, join),
        migrations.AlterField(
            model_name="chainsyncstate",
            name="name",
            field=models.CharField(
                help_text="the followed contract's deployment name", max_length=64, unique=True
            ),
        ),
    ]
