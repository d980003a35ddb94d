"""The operator console's domain (issue 16): plain functions over a session and a time.

Who is looking (:mod:`.viewers`), their signed-in sessions (:mod:`.sessions`), the
callbacks table (:mod:`.listing`), one callback (:mod:`.detail`), bulk actions
(:mod:`.bulk`), the overview (:mod:`.overview`) and the audit of unmasked reads
(:mod:`.audit`). The web adapter is :mod:`worker.api.console`; nothing here imports a
web framework, and every change to a callback goes through :mod:`worker.actions`,
:mod:`worker.edits` and so :mod:`worker.lifecycle`, as the API's do.
"""
