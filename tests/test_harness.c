/* test_harness.c - the named-test convention of test_util.h, on a table of cases that
 * record when they run: test_select takes "--test=NAME" and "--test NAME" out of argv and
 * leaves the other arguments in order; with no selection every case runs once, in table
 * order; a selected case runs after the cases its TEST_CASE_AFTER chain names (in table
 * order, each once, a cycle included) and no other; an unknown name runs nothing and
 * returns 2. */
#include "test_util.h"

static char ran[32]; /* the letters of the cases run, in order */

static void record(char c)
{
    size_t n = strlen(ran);
    CHECK(n + 1 < sizeof ran, "too many runs: %s", ran);
    ran[n] = c;
    ran[n + 1] = '\0';
}

static void a(void) { record('a'); }
static void b(void) { record('b'); }
static void c(void) { record('c'); }
static void d(void) { record('d'); }
static void x(void) { record('x'); }
static void y(void) { record('y'); }

/* c needs a, d needs c (so a too); x and y need each other. */
static const test_case cases[] = {
    TEST_CASE(a, "first"),
    TEST_CASE(b, "independent"),
    TEST_CASE_AFTER(c, a, "after a"),
    TEST_CASE_AFTER(d, c, "after c"),
    TEST_CASE_AFTER(x, y, "after y"),
    TEST_CASE_AFTER(y, x, "after x"),
};

/* Runs cases with only selected; checks the status and the order of the runs. */
static void expect_runs(const char *only, int want_status, const char *want_runs)
{
    ran[0] = '\0';
    int status = TEST_RUN(cases, only);
    printf("selected %s: status %d, ran \"%s\" (want %d, \"%s\")\n", only ? only : "(all)", status, ran, want_status,
           want_runs);
    CHECK(status == want_status, "selected %s: status %d, want %d", only ? only : "(all)", status, want_status);
    CHECK(strcmp(ran, want_runs) == 0, "selected %s: ran \"%s\", want \"%s\"", only ? only : "(all)", ran, want_runs);
}

static void select_from_argv(void)
{
    char a0[] = "t", a1[] = "cuda", a2[] = "--test=alpha", a3[] = "quick";
    char *v1[] = {a0, a1, a2, a3, NULL};
    int n1 = 4;
    const char *only = test_select(&n1, v1);
    CHECK(only && strcmp(only, "alpha") == 0, "--test=alpha: selected %s", only ? only : "(null)");
    CHECK(n1 == 3 && strcmp(v1[1], "cuda") == 0 && strcmp(v1[2], "quick") == 0 && v1[3] == NULL,
          "--test=alpha: argc %d, argv[1] %s, argv[2] %s", n1, v1[1], n1 > 2 ? v1[2] : "-");
    char b1[] = "--test", b2[] = "beta", b3[] = "/path/to/poolprop";
    char *v2[] = {a0, b1, b2, b3, NULL};
    int n2 = 4;
    only = test_select(&n2, v2);
    CHECK(only && strcmp(only, "beta") == 0, "--test beta: selected %s", only ? only : "(null)");
    CHECK(n2 == 2 && strcmp(v2[1], "/path/to/poolprop") == 0 && v2[2] == NULL, "--test beta: argc %d", n2);
    char *v3[] = {a0, a1, NULL};
    int n3 = 2;
    only = test_select(&n3, v3);
    CHECK(only == NULL && n3 == 2 && strcmp(v3[1], "cuda") == 0, "no --test: argc %d", n3);
    printf("--test=NAME and --test NAME are taken out of argv; the other arguments keep their order\n");
}

static void run_all_in_order(void) { expect_runs(NULL, 0, "abcdxy"); }

static void run_selected_with_chain(void)
{
    expect_runs("b", 0, "b");
    expect_runs("c", 0, "ac");
    expect_runs("d", 0, "acd");
    expect_runs("y", 0, "xy");
}

static void unknown_name(void) { expect_runs("nope", 2, ""); }

static const test_case tests[] = {
    TEST_CASE(select_from_argv, "test_select takes --test=NAME / --test NAME out of argv, keeps the rest in order"),
    TEST_CASE(run_all_in_order, "without a selection every case runs once, in table order"),
    TEST_CASE(run_selected_with_chain, "a selected case runs after its TEST_CASE_AFTER chain, each once, no other"),
    TEST_CASE(unknown_name, "an unknown name runs nothing and returns 2"),
};

int main(int argc, char **argv)
{
    const char *only = test_select(&argc, argv);
    return TEST_RUN(tests, only);
}
