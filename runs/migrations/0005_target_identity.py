from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("runs", "0004_pane_timeline_and_workspace"),
    ]

    operations = [
        migrations.AddField(
            model_name="flowrun",
            name="target_real_path",
            field=models.CharField(blank=True, max_length=1000),
        ),
        migrations.AddField(
            model_name="flowrun",
            name="target_identity",
            field=models.CharField(blank=True, max_length=64),
        ),
    ]
