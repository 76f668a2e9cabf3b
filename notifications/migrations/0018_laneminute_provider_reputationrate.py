"""LaneMinute gets the provider its sends went to (old rows: ""), and ReputationRate holds the
rates the minute check computes for the alerts and the dashboard. The rollup's key changes in
0019 (without a transaction, for its concurrent index build)."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('notifications', '0017_tracking_catch_up'),
    ]

    operations = [
        migrations.AddField(
            model_name='laneminute',
            name='provider',
            field=models.CharField(blank=True, db_default='', default='', help_text='Where the sends went; empty for outcomes with no provider (render failures, expired leases, suppressions) and for rows written before migration 0015.', max_length=40),
        ),
        migrations.AlterModelOptions(
            name='laneminute',
            options={'ordering': ['-minute', 'lane', 'provider']},
        ),
        migrations.CreateModel(
            name='ReputationRate',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('lane', models.CharField(max_length=20)),
                ('provider', models.CharField(blank=True, default='', max_length=40)),
                ('sent', models.PositiveIntegerField(default=0)),
                ('hard_bounces', models.PositiveIntegerField(default=0)),
                ('complaints', models.PositiveIntegerField(default=0)),
                ('window_start', models.DateTimeField()),
                ('window_end', models.DateTimeField()),
                ('computed_at', models.DateTimeField()),
            ],
            options={
                'constraints': [models.UniqueConstraint(fields=('lane', 'provider'), name='one_reputation_rate')],
            },
        ),
    ]
