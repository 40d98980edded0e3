from django.apps import AppConfig


class CueledgerConfig(AppConfig):
    name = "cueledger"
    verbose_name = "Cueledger"
