"""Example systems to run in the sandbox, each a scenario of the ``dojo`` command.

* ``order_system``: the order service an AI assistant writes when asked for "a
  distributed order service with inventory checks, payment processing, and email
  confirmation, using Kafka for events". Four FastAPI services, clean and
  plausible, and wrong in the ways the course teaches::

      from sandbox.examples import order_system

      report = order_system.run(seed=7)
      print(report)          # what happened, what went wrong, and how to replay it
"""
