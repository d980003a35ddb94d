"""The platform's webhooks in (issue 14): verified and stored by the admin API
(``POST /webhooks/speko``), processed afterwards by a worker task."""
