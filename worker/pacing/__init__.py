"""When and how fast callbacks may be dialed: calling windows in the callee's local time
(:mod:`~worker.pacing.windows`, applied by :mod:`~worker.pacing.deferral`), each
organization's own settings (:mod:`~worker.pacing.orgs`), concurrency and rate limits
and 429 pauses (:mod:`~worker.pacing.limits`), holds on dialing
(:mod:`~worker.pacing.holds`) and the fair pick the claim makes within them all
(:mod:`~worker.pacing.fairness`)."""
