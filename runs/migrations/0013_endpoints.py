from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("runs", "0012_run_web"),
    ]

    operations = [
        migrations.AlterField(
            model_name="flowrun",
            name="endpoint_url",
            field=models.CharField(blank=True, max_length=2000),
        ),
        migrations.AddField(
            model_name="flowstep",
            name="asked_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="flowstep",
            name="endpoint",
            field=models.CharField(blank=True, max_length=500),
        ),
        migrations.CreateModel(
            name="ModelEndpoint",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("url", models.CharField(max_length=500, unique=True)),
                ("down_until", models.DateTimeField(blank=True, null=True)),
                ("reason", models.CharField(blank=True, max_length=300)),
            ],
            options={"db_table": "model_endpoints"},
        ),
    ]
