"""Callback webhooks out (issue 15): every change of a callback told to the customer's
systems, signed, durable and retried. :mod:`.outbox` writes the events in the move's own
transaction; :mod:`.delivery` sends them; :mod:`.endpoints` manages where they go;
:mod:`.addresses` keeps them away from private networks."""
