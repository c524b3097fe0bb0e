"""The periodic jobs `hisho run scheduler` keeps armed (`infra.scheduler.periodic`).

One line per job: a name (permanent: it keys the job's timers), a cron expression, and the
command of an occurrence, e.g.

    PeriodicJob("daily-digest", "0 8 * * *", lambda at: SendDigest(day=at.date()),
                timezone="Europe/Berlin")

A job taken out of this list stops once its pending occurrence fired.
"""

from __future__ import annotations

from infra.scheduler.periodic import PeriodicJobs

PERIODIC_JOBS = PeriodicJobs(())
