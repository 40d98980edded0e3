"""Run the web server and a worker together in the foreground; Ctrl-C (or either one dying) stops both."""

import signal
import subprocess
import sys
import time

from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Serve the web app with gunicorn and run a Celery worker beside it until interrupted."

    def add_arguments(self, parser):
        parser.add_argument("--bind", default="127.0.0.1:8000")
        parser.add_argument("--web-workers", type=int, default=2)
        parser.add_argument("--concurrency", type=int, default=1, help="worker processes for background jobs")

    def handle(self, *args, bind, web_workers, concurrency, **options):
        web = [
            sys.executable,
            "-m",
            "gunicorn",
            "cueledger.wsgi",
            "--bind",
            bind,
            "--workers",
            str(web_workers),
            "--access-logfile",
            "-",
            "--timeout",
            "120",
        ]
        worker = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "cueledger",
            "worker",
            "--loglevel",
            "INFO",
            "--concurrency",
            str(concurrency),
        ]
        if settings.CELERY_BROKER_URL.startswith("filesystem://"):
            worker += ["--without-mingle", "--without-gossip", "--without-heartbeat"]
        processes = [subprocess.Popen(worker), subprocess.Popen(web)]  # noqa: S603 - our own fixed argv
        self.stdout.write(f"Cueledger on http://{bind}/ (API docs: http://{bind}/api/docs/); Ctrl-C stops.")
        stopping = False

        def stop(signum, frame):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        while not stopping and all(p.poll() is None for p in processes):
            time.sleep(0.2)
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for process in processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
        failed = [p.returncode for p in processes if p.returncode not in (0, -signal.SIGTERM, None)]
        if failed and not stopping:
            sys.exit(1)
