/*
 * api.h - the handlers of analytics.metrics.* (docs/api.md, "metrics"):
 * request validation, who may do what, and the record's life cycle. Each
 * runs on a worker thread of the service framework; req->ctx is the
 * metrics_ctx.
 */
#ifndef METRICS_API_H
#define METRICS_API_H

#include "common/service.h"

an_status metrics_handle_create(an_request *req, cJSON **data, an_error *err);
an_status metrics_handle_get(an_request *req, cJSON **data, an_error *err);
an_status metrics_handle_list(an_request *req, cJSON **data, an_error *err);
an_status metrics_handle_update(an_request *req, cJSON **data, an_error *err);
an_status metrics_handle_deprecate(an_request *req, cJSON **data, an_error *err);
an_status metrics_handle_query(an_request *req, cJSON **data, an_error *err);
an_status metrics_handle_preview(an_request *req, cJSON **data, an_error *err);

#endif
