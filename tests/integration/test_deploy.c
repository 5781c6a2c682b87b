/*
 * The deployment artefacts pass their static checks (deploy/validate.sh),
 * and the checks catch a broken copy. No Docker engine and no cluster here:
 * this is what can be verified. Needs python3-yaml (stack.sh install), not
 * the stack itself; runs from the repository root.
 */
#include "tests/harness.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A copy of deploy/k8s and deploy/docker in a fresh temp dir; free it. */
static char *copy_artefacts(void)
{
    char tmpl[] = "/tmp/an-deploy-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(tmpl));
    char *cmd;
    ck_assert(asprintf(&cmd, "cp -r deploy/k8s deploy/docker %s/", tmpl) > 0);
    int rc = -1;
    free(th_run(cmd, &rc));
    free(cmd);
    ck_assert_int_eq(rc, 0);
    return strdup(tmpl);
}

static void remove_dir(char *dir)
{
    char *cmd;
    ck_assert(asprintf(&cmd, "rm -rf %s", dir) > 0);
    free(th_run(cmd, NULL));
    free(cmd);
    free(dir);
}

/* Runs `edit` (a shell command, %1$s = the copy's dir) on a copy, validates
 * the copy; returns the output and sets *rc. */
static char *validate_broken_copy(const char *edit_fmt, int *rc)
{
    char *dir = copy_artefacts();
    char *edit, *cmd;
    ck_assert(asprintf(&edit, edit_fmt, dir) > 0);
    int erc = -1;
    char *eout = th_run(edit, &erc);
    ck_assert_msg(erc == 0, "edit failed: %s: %s", edit, eout);
    free(eout);
    free(edit);
    ck_assert(asprintf(&cmd,
                       "deploy/validate.sh --k8s %s/k8s --dockerfile %s/docker/Dockerfile 2>&1",
                       dir, dir) > 0);
    char *out = th_run(cmd, rc);
    free(cmd);
    remove_dir(dir);
    return out;
}

START_TEST(test_validate_accepts_the_checked_in_manifests_and_dockerfile)
{
    int rc = -1;
    char *out = th_run("deploy/validate.sh 2>&1", &rc);
    ck_assert_msg(rc == 0, "validate.sh exited %d:\n%s", rc, out);
    ck_assert_msg(strstr(out, "validate: ok: 7 services") != NULL, "%s", out);
    free(out);
}
END_TEST

START_TEST(test_validate_rejects_a_deployment_without_liveness_probe)
{
    int rc = -1;
    /* delete the livenessProbe block (6 lines) of the ingest Deployment */
    char *out = validate_broken_copy(
        "sed -i '/livenessProbe:/,+6d' %1$s/k8s/ingest.yaml && ! grep -q livenessProbe "
        "%1$s/k8s/ingest.yaml",
        &rc);
    ck_assert_msg(rc == 1, "exit %d: %s", rc, out);
    ck_assert_msg(strstr(out, "Deployment analytics-ingest container ingest: no livenessProbe"),
                  "%s", out);
    free(out);
}
END_TEST

START_TEST(test_validate_rejects_env_from_a_key_the_configmap_lacks)
{
    int rc = -1;
    char *out = validate_broken_copy("sed -i '/^ANALYTICS_REDIS_URL=/d' %1$s/k8s/config.env", &rc);
    ck_assert_msg(rc == 1, "exit %d: %s", rc, out);
    ck_assert_msg(strstr(out, "env ANALYTICS_REDIS_URL refers to key ANALYTICS_REDIS_URL, absent "
                              "from ConfigMap analytics-config"),
                  "%s", out);
    free(out);
}
END_TEST

START_TEST(test_validate_rejects_trusted_headers_mode_on)
{
    int rc = -1;
    char *out = validate_broken_copy(
        "sed -i 's/^ANALYTICS_AUTH_TRUSTED_HEADERS=.*/ANALYTICS_AUTH_TRUSTED_HEADERS=true/' "
        "%1$s/k8s/config.env",
        &rc);
    ck_assert_msg(rc == 1, "exit %d: %s", rc, out);
    ck_assert_msg(strstr(out, "trusted-headers mode is on"), "%s", out);
    free(out);
}
END_TEST

START_TEST(test_validate_rejects_a_dockerfile_on_latest_running_as_root)
{
    int rc = -1;
    char *out =
        validate_broken_copy("sed -i -e 's/^ARG DEBIAN_IMAGE=.*/ARG DEBIAN_IMAGE=debian:latest/' "
                             "-e 's/^USER 10001:10001$/USER 0/' %1$s/docker/Dockerfile",
                             &rc);
    ck_assert_msg(rc == 1, "exit %d: %s", rc, out);
    ck_assert_msg(strstr(out, "base image debian:latest uses the latest tag"), "%s", out);
    ck_assert_msg(strstr(out, "stage metrics: USER is root"), "%s", out);
    free(out);
}
END_TEST

Suite *deploy_suite(void)
{
    Suite *s = suite_create("deploy");
    TCase *tc = tcase_create("validate");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_validate_accepts_the_checked_in_manifests_and_dockerfile);
    tcase_add_test(tc, test_validate_rejects_a_deployment_without_liveness_probe);
    tcase_add_test(tc, test_validate_rejects_env_from_a_key_the_configmap_lacks);
    tcase_add_test(tc, test_validate_rejects_trusted_headers_mode_on);
    tcase_add_test(tc, test_validate_rejects_a_dockerfile_on_latest_running_as_root);
    suite_add_tcase(s, tc);
    return s;
}
