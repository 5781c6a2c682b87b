/*
 * run_tests - the one Check runner for the whole suite.
 *
 *   run_tests [unit|integration|all] [SUITE...]
 *
 * Unit suites need nothing running. Integration suites need the local stack
 * (deploy/local/stack.sh start; source its env file) and fail, never skip,
 * when it is missing. Suites are discovered by the Makefile from their
 * `Suite *name_suite(void)` signatures (build/tests/suites.h).
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define AN_UNIT_SUITE(n)        Suite *n##_suite(void);
#define AN_INTEGRATION_SUITE(n) Suite *n##_suite(void);
#include "suites.h"
#undef AN_UNIT_SUITE
#undef AN_INTEGRATION_SUITE

typedef struct {
    const char *name;
    Suite *(*make)(void);
    int integration;
} suite_entry;

static const suite_entry suites[] = {
#define AN_UNIT_SUITE(n)        {#n, n##_suite, 0},
#define AN_INTEGRATION_SUITE(n) {#n, n##_suite, 1},
#include "suites.h"
    {NULL, NULL, 0},
};

static int wanted(const char *name, int argc, char **argv, int first)
{
    if (first >= argc)
        return 1;
    for (int i = first; i < argc; i++)
        if (strcmp(argv[i], name) == 0)
            return 1;
    return 0;
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "all";
    int want_unit = strcmp(mode, "unit") == 0 || strcmp(mode, "all") == 0;
    int want_integ = strcmp(mode, "integration") == 0 || strcmp(mode, "all") == 0;
    if (!want_unit && !want_integ) {
        fprintf(stderr, "usage: %s [unit|integration|all] [SUITE...]\n", argv[0]);
        return 2;
    }
    /* Check's default of 4 s per test is too short for integration tests. */
    setenv("CK_DEFAULT_TIMEOUT", "60", 0);

    SRunner *sr = NULL;
    for (const suite_entry *e = suites; e->name; e++) {
        if ((e->integration ? want_integ : want_unit) && wanted(e->name, argc, argv, 2)) {
            if (!sr)
                sr = srunner_create(e->make());
            else
                srunner_add_suite(sr, e->make());
        }
    }
    if (!sr) {
        fprintf(stderr, "no suite matched\n");
        return 2;
    }
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
