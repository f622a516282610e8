import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("runs", "0011_target_grants"),
    ]

    operations = [
        migrations.AddField(
            model_name="flowrun",
            name="web",
            field=models.BooleanField(default=False),
        ),
        migrations.CreateModel(
            name="WebSource",
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
                        choices=[("result", "Result"), ("page", "Page")], max_length=10
                    ),
                ),
                ("url", models.TextField()),
                ("final_url", models.TextField(blank=True)),
                ("title", models.CharField(blank=True, max_length=300)),
                ("text", models.TextField(blank=True)),
                ("step_key", models.CharField(blank=True, max_length=50)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                (
                    "run",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="web_sources",
                        to="runs.flowrun",
                    ),
                ),
            ],
            options={
                "db_table": "web_sources",
                "ordering": ["id"],
                "indexes": [
                    models.Index(fields=["run", "kind"], name="web_sources_run_id_9f0ab6_idx")
                ],
            },
        ),
    ]
