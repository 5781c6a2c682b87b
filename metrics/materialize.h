/*
 * materialize.h - scheduled materialization of metrics into
 * analytics.metric_values.
 *
 * Scheduler (one thread per replica, ANALYTICS_METRICS_SCHEDULER): every
 * ANALYTICS_METRICS_SCHEDULER_INTERVAL it looks at the active metrics with a
 * schedule (re-read every ANALYTICS_METRICS_SCHEDULE_REFRESH) and, for each
 * cron tick that passed within ANALYTICS_METRICS_TICK_CATCHUP, claims the
 * key <prefix>:tick:<metric id>:<tick> once (SET NX PX, common/lease). The
 * replica that claims it pushes one job on the Redis Streams queue
 * ANALYTICS_METRICS_QUEUE; every other replica skips the tick. So a tick
 * fires once however many replicas run, and a replica started late still
 * fires the ticks nobody claimed.
 *
 * Workers (ANALYTICS_METRICS_MATERIALIZE_WORKERS threads per replica) take
 * jobs (common/queue: at least once, reclaimed from a dead consumer after
 * ANALYTICS_METRICS_JOB_VISIBILITY, retried with backoff, dead-lettered
 * after ANALYTICS_METRICS_JOB_MAX_ATTEMPTS). A job recomputes the metric's
 * `lookback` complete buckets before the tick (the bucket holding the tick
 * is not complete yet), as the reader, for the owner tenant (a platform
 * metric: per tenant and the all-tenant total), writes the values (a
 * recomputed bucket replaces the old one: ReplacingMergeTree by version),
 * then one row in analytics.metric_runs, then acks. A worker killed in the
 * middle leaves the job pending; another replica reclaims and finishes it.
 * Writing is idempotent, so a job run twice changes nothing.
 */
#ifndef METRICS_MATERIALIZE_H
#define METRICS_MATERIALIZE_H

#include "common/status.h"
#include "metrics/metrics.h"

/* Start the scheduler and the workers configured in ctx (ctx->mat). */
an_status metrics_materializer_start(metrics_ctx *ctx, an_error *err);

/* Stop them: no new tick or job; a job in progress finishes (its pause, if
 * any, is cut short and the job handed back). ctx may have none. */
void metrics_materializer_stop(metrics_ctx *ctx);

#endif
