"""``celery -A worker``: the Celery app for worker and beat processes, from the environment."""

from worker.celery_app import create_celery
from worker.settings import load_settings

app = create_celery(load_settings())
