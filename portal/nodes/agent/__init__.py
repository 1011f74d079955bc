"""What runs on a hospital node: its REST client, keystore, settings, dataset
fetch-and-verify, and the Celery tasks on its own `node.<node-id>` queue.

The node's process has no database (settings give it the dummy backend), so
nothing here imports a model or `django.db`; the portal's side of the node
registry (models, services, APIs) lives beside this package in portal/nodes/.
The import-linter contracts in pyproject.toml hold this.
"""
