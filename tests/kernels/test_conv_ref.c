/* test_conv_ref.c - the plain C reference (reference/conv_ref.c) defends itself: shapes it
 * cannot index with int loops and size_t offsets (sizes below 1, a padded extent or a
 * tensor beyond INT_MAX, extents that are not conv_ref_derive's) are refused with -1 and
 * no array is touched; shapes just inside the bounds are accepted; and a small shape still
 * computes a convolution (a centred one-hot kernel copies x into y). */
#include "conv_ref.h"

#include "test_util.h"

#include <limits.h>
#include <string.h>

static conv_ref_shape shape(int n, int c, int h, int w, int k, int r, int s, int stride, int pad, int pool)
{
    conv_ref_shape sh = {n, c, h, w, k, r, s, stride, pad, pool, 0, 0, 0, 0, 0};
    return sh;
}

static void refused(const char *what, conv_ref_shape sh)
{
    conv_ref_shape derived = sh;
    CHECK(conv_ref_derive(&derived) == -1, "%s: conv_ref_derive must refuse it", what);
    CHECK(derived.p == 0 && derived.q == 0 && derived.hp == 0 && derived.wp == 0, "%s: extents zeroed", what);
    /* A caller that skips conv_ref_derive (extents made up) gets -1 from every function,
     * which must not touch the one-element arrays it is given. */
    sh.p = sh.q = sh.hp = sh.wp = 1;
    float a[1] = {7.0f}, b[1] = {7.0f}, out[1] = {-3.0f};
    CHECK(conv_fwd_ref(&sh, a, b, out) == -1 && out[0] == -3.0f, "%s: conv_fwd_ref", what);
    CHECK(pool_ref(&sh, a, out) == -1 && out[0] == -3.0f, "%s: pool_ref", what);
    CHECK(unpool_ref(&sh, a, out) == -1 && out[0] == -3.0f, "%s: unpool_ref", what);
    CHECK(conv_bwd_data_ref(&sh, a, b, out) == -1 && out[0] == -3.0f, "%s: conv_bwd_data_ref", what);
    CHECK(conv_bwd_weight_ref(&sh, a, b, out) == -1 && out[0] == -3.0f, "%s: conv_bwd_weight_ref", what);
    printf("refused: %s\n", what);
}

static conv_ref_shape small; /* 2x3x5x6, K 3, 3x3, pad 1, pool 2 (shapes_inside) */

static void shapes_refused(void)
{
    refused("pad 2^31-1 (h + 2*pad overflows an int)", shape(1, 1, 4, 4, 1, 3, 3, INT_MAX, INT_MAX, 1));
    refused("pad 2^30 (h + 2*pad = 2^31 + 4)", shape(1, 1, 4, 4, 1, 3, 3, 1 << 30, 1 << 30, 1));
    refused("N = C = INT_MAX (x has 2^62 elements)", shape(INT_MAX, INT_MAX, 8, 8, 8, 3, 3, 1, 1, 1));
    refused("y of 2^34 elements", shape(1 << 15, 1, 4, 4, 1 << 15, 1, 1, 1, 0, 1));
    refused("h + pool - 1 beyond INT_MAX", shape(1, 1, INT_MAX - 2, 1, 1, 1, 1, 1, 0, 4));
    refused("negative pad", shape(1, 1, 4, 4, 1, 3, 3, 1, -1, 1));
    refused("zero channels", shape(1, 0, 4, 4, 1, 3, 3, 1, 1, 1));
    refused("zero stride", shape(1, 1, 4, 4, 1, 3, 3, 0, 1, 1));
    refused("zero pool factor", shape(1, 1, 4, 4, 1, 3, 3, 1, 1, 0));
    refused("kernel larger than the padded input", shape(1, 1, 2, 2, 1, 5, 5, 1, 1, 1));
}

static void shapes_inside(void)
{
    /* Just inside: x of exactly INT_MAX elements is a shape the reference indexes. */
    conv_ref_shape edge = shape(1, 1, 1, INT_MAX, 1, 1, 1, 1, 0, 1);
    CHECK(conv_ref_derive(&edge) == 0 && edge.q == INT_MAX, "x of INT_MAX elements accepted (q = %d)", edge.q);
    /* A derived shape with one extent altered is refused. */
    small = shape(2, 3, 5, 6, 3, 3, 3, 1, 1, 2);
    CHECK(conv_ref_derive(&small) == 0, "a small shape is accepted");
    conv_ref_shape altered = small;
    altered.q++;
    float dummy[1] = {-3.0f};
    CHECK(conv_fwd_ref(&altered, dummy, dummy, dummy) == -1 && dummy[0] == -3.0f, "altered q refused");
}

static void identity_convolution(void)
{
    /* The small shape computes: a kernel with one 1 at the centre of channel c -> k = c
     * copies x into y (stride 1, pad 1: P = H, Q = W). */
    float x[2 * 3 * 5 * 6], wt[3 * 3 * 3 * 3], y[2 * 3 * 5 * 6];
    for (int i = 0; i < 2 * 3 * 5 * 6; i++) x[i] = (float)(i % 17) - 8.0f;
    memset(wt, 0, sizeof wt);
    for (int k = 0; k < 3; k++) wt[((k * 3 + k) * 3 + 1) * 3 + 1] = 1.0f;
    CHECK(conv_fwd_ref(&small, x, wt, y) == 0, "conv_fwd_ref on a valid shape");
    CHECK(small.p == 5 && small.q == 6, "P, Q = %d, %d", small.p, small.q);
    CHECK(memcmp(x, y, sizeof x) == 0, "identity convolution copies x");
    printf("accepted: x of INT_MAX elements; identity convolution 2x3x5x6 exact\n");
}

static const test_case tests[] = {
    TEST_CASE(shapes_refused, "10 shapes the reference cannot index are refused with -1, touching no array"),
    TEST_CASE(shapes_inside, "x of exactly INT_MAX elements and a small shape are accepted; an altered extent refused"),
    TEST_CASE_AFTER(identity_convolution, shapes_inside, "a centred one-hot kernel copies x into y exactly"),
};

int main(int argc, char **argv)
{
    const char *only = test_select(&argc, argv);
    return TEST_RUN(tests, only);
}
