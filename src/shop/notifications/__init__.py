"""The notification worker: emails the customer when something happens to them (issue 14).

Its own process (``python -m shop.notifications``, a Deployment in Kubernetes), in the package
shape of the services: ``settings.py``, ``service.py`` (what each event's email says, and the
SMTP sender), ``app.py`` (the consumer loop and its metrics endpoint). It has no database of its
own: it reads the customer's address from the user service's API with a service token.
"""
