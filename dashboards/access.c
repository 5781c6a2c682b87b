/*
 * access.c - the access rules of a dashboard (docs/dashboards.md):
 *   view (get, list, render): the creator, a holder of one of
 *     accessControl.allowedRoles, a user of accessControl.allowedUsers, a
 *     tenant admin (role ANALYTICS_DASHBOARDS_TENANT_ADMIN_ROLE, default
 *     "tenant-admin"), or a platform admin;
 *   edit (update, widgets, delete) and change access: the creator, tenant
 *     admins and platform admins only.
 * The tenant itself is checked before (dashboards are looked up in the
 * caller's tenant only).
 */
#include "dashboards/dash.h"

#include <string.h>

bool dash_is_tenant_admin(const dash_ctx *c, const an_auth *a)
{
    return an_auth_is_platform_admin(a) || (c->tenant_admin_role && *c->tenant_admin_role &&
                                            an_auth_has_role(a, c->tenant_admin_role));
}

static bool is_creator(const an_auth *a, const dash *d)
{
    return a->user && d->created_by && strcmp(a->user, d->created_by) == 0;
}

static bool in_list(const cJSON *arr, const char *s)
{
    const cJSON *it;
    if (!s)
        return false;
    cJSON_ArrayForEach(it, arr)
    {
        if (cJSON_IsString(it) && strcmp(it->valuestring, s) == 0)
            return true;
    }
    return false;
}

bool dash_can_view(const dash_ctx *c, const an_auth *a, const dash *d)
{
    if (is_creator(a, d) || dash_is_tenant_admin(c, a))
        return true;
    const cJSON *users = cJSON_GetObjectItemCaseSensitive(d->acl, "allowedUsers");
    if (in_list(users, a->user))
        return true;
    const cJSON *roles = cJSON_GetObjectItemCaseSensitive(d->acl, "allowedRoles");
    for (size_t i = 0; i < a->nroles; i++)
        if (in_list(roles, a->roles[i]))
            return true;
    return false;
}

bool dash_can_edit(const dash_ctx *c, const an_auth *a, const dash *d)
{
    return is_creator(a, d) || dash_is_tenant_admin(c, a);
}

static an_status string_list(const cJSON *in, const char *name, cJSON *out, an_error *err)
{
    const cJSON *v = in ? cJSON_GetObjectItemCaseSensitive(in, name) : NULL;
    cJSON *arr = cJSON_CreateArray();
    cJSON_AddItemToObject(out, name, arr);
    if (!v || cJSON_IsNull(v))
        return AN_OK;
    char field[64];
    snprintf(field, sizeof(field), "accessControl.%s", name);
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) > 200)
        return an_error_field(err, AN_INVALID_ARGUMENT, field,
                              "%s must be an array of at most 200 strings", field);
    const cJSON *it;
    cJSON_ArrayForEach(it, v)
    {
        if (!cJSON_IsString(it) || !*it->valuestring || strlen(it->valuestring) > 200)
            return an_error_field(err, AN_INVALID_ARGUMENT, field,
                                  "%s must hold non-empty strings of at most 200 bytes", field);
        if (!in_list(arr, it->valuestring))
            cJSON_AddItemToArray(arr, cJSON_CreateString(it->valuestring));
    }
    return AN_OK;
}

an_status dash_acl_parse(const cJSON *in, cJSON **out, an_error *err)
{
    *out = NULL;
    if (in && !cJSON_IsNull(in) && !cJSON_IsObject(in))
        return an_error_field(err, AN_INVALID_ARGUMENT, "accessControl",
                              "accessControl must be an object");
    cJSON *acl = cJSON_CreateObject();
    an_status st = string_list(in, "allowedRoles", acl, err);
    if (st == AN_OK)
        st = string_list(in, "allowedUsers", acl, err);
    if (st != AN_OK) {
        cJSON_Delete(acl);
        return st;
    }
    *out = acl;
    return AN_OK;
}
