/*
 * query.c - from a job's query template and parameters to the SQL that runs,
 * through common/template (the template language metrics, reports and
 * exports share) and common/sqlcheck (the checker that binds every table to
 * the caller's tenant).
 *
 * A template reads {{events}} (or `events`) and {{events_hourly}}, the
 * caller's tenant only, and may use {{time_range}}, {{bucket}},
 * {{dimensions}}, {{group_by}} and {{filters}}. The parameters of an export
 * are the members of the create request the template language defines:
 * "filters" ([{field, op, value}], applied by {{filters}}), "from"/"to"
 * (RFC 3339, by {{time_range}}), "granularity" ({{bucket}}) and
 * "dimensions". They are validated at create and kept with the job as one
 * JSON object, so a retry or a reclaim binds exactly the same SQL.
 */
#include "exports/exports.h"

#include "common/template.h"

#include <stdlib.h>
#include <string.h>

static const char *const param_keys[] = {"filters",     "from",       "to",
                                         "granularity", "dimensions", NULL};

an_status exports_params_check(const cJSON *body, char **canonical, an_error *err)
{
    an_template_params p;
    an_status s = an_template_params_from_json(body, &p, err);
    if (s != AN_OK)
        return s;
    an_template_params_free(&p);
    if (canonical) {
        cJSON *o = cJSON_CreateObject();
        for (size_t i = 0; param_keys[i]; i++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, param_keys[i]);
            if (v && !cJSON_IsNull(v))
                cJSON_AddItemToObject(o, param_keys[i], cJSON_Duplicate(v, 1));
        }
        *canonical = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
    }
    return AN_OK;
}

an_status exports_bind_query(const char *tenant_id, const char *query, const char *params_json,
                             an_buf *out, an_error *err)
{
    cJSON *obj = params_json ? cJSON_Parse(params_json) : NULL;
    an_template_params p;
    an_status s = an_template_params_from_json(obj, &p, err);
    cJSON_Delete(obj);
    if (s != AN_OK)
        return s;
    an_template_scope scope = {.tenant_id = tenant_id};
    s = an_template_bind(query, strlen(query), &p, &scope, out, err);
    an_template_params_free(&p);
    return s;
}
