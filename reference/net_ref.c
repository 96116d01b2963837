/* net_ref.c - the whole-network reference of net_ref.h: direct loops in double precision. */
#include "net_ref.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define AT4(a, d1, d2, d3, i0, i1, i2, i3) a[(((size_t)(i0) * (d1) + (i1)) * (d2) + (i2)) * (d3) + (i3)]

static void conv_forward(const ref_layer *l, const double *x, const double *w, double *y)
{
    for (int n = 0; n < l->n; n++)
        for (int k = 0; k < l->k; k++)
            for (int oy = 0; oy < l->p; oy++)
                for (int ox = 0; ox < l->q; ox++) {
                    double sum = 0;
                    for (int c = 0; c < l->c; c++)
                        for (int r = 0; r < l->r; r++)
                            for (int t = 0; t < l->s; t++) {
                                int ih = oy * l->stride + r - l->pad, iw = ox * l->stride + t - l->pad;
                                if (ih < 0 || ih >= l->h || iw < 0 || iw >= l->w) continue;
                                sum += AT4(w, l->c, l->r, l->s, k, c, r, t) * AT4(x, l->c, l->h, l->w, n, c, ih, iw);
                            }
                    AT4(y, l->k, l->p, l->q, n, k, oy, ox) = sum;
                }
}

/* xu = unpool(pool(x)) with the layer's factor and mode. */
static void pool_unpool(const ref_layer *l, const double *x, double *xu)
{
    int f = l->pool;
    for (int n = 0; n < l->n; n++)
        for (int c = 0; c < l->c; c++)
            for (int i = 0; i * f < l->h; i++)
                for (int j = 0; j * f < l->w; j++) {
                    double sum = 0, best = -INFINITY;
                    int count = 0;
                    for (int h = i * f; h < i * f + f && h < l->h; h++)
                        for (int w = j * f; w < j * f + f && w < l->w; w++) {
                            double v = AT4(x, l->c, l->h, l->w, n, c, h, w);
                            sum += v;
                            best = v > best ? v : best;
                            count++;
                        }
                    double v = l->pool_max ? best : sum / count;
                    for (int h = i * f; h < i * f + f && h < l->h; h++)
                        for (int w = j * f; w < j * f + f && w < l->w; w++) AT4(xu, l->c, l->h, l->w, n, c, h, w) = v;
                }
}

static void conv_backward(const ref_layer *l, const double *x, const double *w, const double *dy, double *dx,
                          double *dw, double *xu)
{
    const double *xs = x;
    if (l->pool > 1) {
        pool_unpool(l, x, xu);
        xs = xu;
    }
    for (int n = 0; n < l->n; n++)
        for (int k = 0; k < l->k; k++)
            for (int oy = 0; oy < l->p; oy++)
                for (int ox = 0; ox < l->q; ox++) {
                    double g = AT4(dy, l->k, l->p, l->q, n, k, oy, ox);
                    for (int c = 0; c < l->c; c++)
                        for (int r = 0; r < l->r; r++)
                            for (int t = 0; t < l->s; t++) {
                                int ih = oy * l->stride + r - l->pad, iw = ox * l->stride + t - l->pad;
                                if (ih < 0 || ih >= l->h || iw < 0 || iw >= l->w) continue;
                                AT4(dw, l->c, l->r, l->s, k, c, r, t) += g * AT4(xs, l->c, l->h, l->w, n, c, ih, iw);
                                if (dx)
                                    AT4(dx, l->c, l->h, l->w, n, c, ih, iw) += g * AT4(w, l->c, l->r, l->s, k, c, r, t);
                            }
                }
}

/* Per-layer values the backward pass needs. */
typedef struct bn_saved {
    double *mean, *invstd, *xhat;
} bn_saved;

static void bn_forward(const ref_layer *l, const double *y, const double *gamma, const double *beta,
                       const double *residual, double *out, double *state, bn_saved *sv)
{
    int hw = l->h;
    double m = (double)l->n * hw;
    for (int c = 0; c < l->c; c++) {
        double sum = 0, sq = 0;
        for (int n = 0; n < l->n; n++)
            for (int i = 0; i < hw; i++) sum += y[((size_t)n * l->c + c) * hw + i];
        double mean = sum / m;
        for (int n = 0; n < l->n; n++)
            for (int i = 0; i < hw; i++) {
                double d = y[((size_t)n * l->c + c) * hw + i] - mean;
                sq += d * d;
            }
        double var = sq / m, invstd = 1.0 / sqrt(var + 1e-5);
        sv->mean[c] = mean;
        sv->invstd[c] = invstd;
        state[l->running_mean + c] = 0.9 * state[l->running_mean + c] + 0.1 * mean;
        state[l->running_var + c] = 0.9 * state[l->running_var + c] + 0.1 * var * m / (m - 1);
        for (int n = 0; n < l->n; n++)
            for (int i = 0; i < hw; i++) {
                size_t at = ((size_t)n * l->c + c) * hw + i;
                sv->xhat[at] = (y[at] - mean) * invstd;
                double v = gamma[c] * sv->xhat[at] + beta[c];
                if (residual) v += residual[at];
                out[at] = l->relu && v < 0 ? 0 : v;
            }
    }
}

static void bn_backward(const ref_layer *l, const double *out, const double *dout, const double *gamma,
                        const bn_saved *sv, double *dy, double *dres, double *dgamma, double *dbeta, double *dz)
{
    int hw = l->h;
    double m = (double)l->n * hw;
    size_t count = (size_t)l->n * l->c * hw;
    for (size_t i = 0; i < count; i++) dz[i] = l->relu && !(out[i] > 0) ? 0 : dout[i];
    if (dres)
        for (size_t i = 0; i < count; i++) dres[i] += dz[i];
    for (int c = 0; c < l->c; c++) {
        double sg = 0, sb = 0;
        for (int n = 0; n < l->n; n++)
            for (int i = 0; i < hw; i++) {
                size_t at = ((size_t)n * l->c + c) * hw + i;
                sb += dz[at];
                sg += dz[at] * sv->xhat[at];
            }
        dgamma[c] += sg;
        dbeta[c] += sb;
        for (int n = 0; n < l->n; n++)
            for (int i = 0; i < hw; i++) {
                size_t at = ((size_t)n * l->c + c) * hw + i;
                dy[at] += gamma[c] * sv->invstd[c] / m * (m * dz[at] - sb - sv->xhat[at] * sg);
            }
    }
}

static void maxpool(const ref_layer *l, const double *x, double *y, const double *dy, double *dx)
{
    for (int n = 0; n < l->n; n++)
        for (int c = 0; c < l->c; c++)
            for (int oy = 0; oy < l->p; oy++)
                for (int ox = 0; ox < l->q; ox++) {
                    double best = -INFINITY;
                    int bh = -1, bw = -1;
                    for (int r = 0; r < l->r; r++)
                        for (int t = 0; t < l->r; t++) {
                            int h = oy * l->stride + r - l->pad, w = ox * l->stride + t - l->pad;
                            if (h < 0 || h >= l->h || w < 0 || w >= l->w) continue;
                            double v = AT4(x, l->c, l->h, l->w, n, c, h, w);
                            if (v > best) best = v, bh = h, bw = w;
                        }
                    if (y) AT4(y, l->c, l->p, l->q, n, c, oy, ox) = best;
                    if (dx) AT4(dx, l->c, l->h, l->w, n, c, bh, bw) += AT4(dy, l->c, l->p, l->q, n, c, oy, ox);
                }
}

double ref_net_step(const ref_net *net, const double *params, double *state, const float *x, const int32_t *labels,
                    double *grads)
{
    int nt = net->tensor_count;
    double **t = calloc((size_t)nt, sizeof *t), **d = calloc((size_t)nt, sizeof *d);
    bn_saved *sv = calloc((size_t)net->layer_count, sizeof *sv);
    size_t largest = 0;
    int ok = t && d && sv;
    for (int i = 0; ok && i < nt; i++) {
        t[i] = calloc(net->tensor_elems[i] + 1, sizeof **t);
        d[i] = calloc(net->tensor_elems[i] + 1, sizeof **d);
        ok = t[i] && d[i];
        if (net->tensor_elems[i] > largest) largest = net->tensor_elems[i];
    }
    double *scratch = ok ? calloc(largest + 1, sizeof *scratch) : NULL;
    for (int i = 0; ok && i < net->layer_count; i++) {
        const ref_layer *l = &net->layers[i];
        if (l->op != REF_BN) continue;
        size_t count = (size_t)l->n * l->c * l->h;
        sv[i].mean = calloc((size_t)l->c, sizeof(double));
        sv[i].invstd = calloc((size_t)l->c, sizeof(double));
        sv[i].xhat = calloc(count, sizeof(double));
        ok = sv[i].mean && sv[i].invstd && sv[i].xhat;
    }
    double loss = NAN;
    if (ok && scratch) {
        for (size_t i = 0; i < net->tensor_elems[0]; i++) t[0][i] = x[i];
        memset(grads, 0, net->param_count * sizeof *grads);
        for (int i = 0; i < net->layer_count; i++) {
            const ref_layer *l = &net->layers[i];
            double *in = t[l->input], *out = t[l->output];
            switch (l->op) {
            case REF_CONV: conv_forward(l, in, params + l->weight, out); break;
            case REF_BN:
                bn_forward(l, in, params + l->weight, params + l->bias, l->residual >= 0 ? t[l->residual] : NULL, out,
                           state, &sv[i]);
                break;
            case REF_MAXPOOL: maxpool(l, in, out, NULL, NULL); break;
            case REF_AVGPOOL:
                for (int n = 0; n < l->n; n++)
                    for (int c = 0; c < l->c; c++) {
                        double sum = 0;
                        for (int j = 0; j < l->h * l->w; j++) sum += in[((size_t)n * l->c + c) * l->h * l->w + j];
                        out[(size_t)n * l->c + c] = sum / (l->h * l->w);
                    }
                break;
            case REF_FC:
                for (int n = 0; n < l->n; n++)
                    for (int o = 0; o < l->k; o++) {
                        double sum = params[l->bias + o];
                        for (int j = 0; j < l->c; j++)
                            sum += params[l->weight + (size_t)o * l->c + j] * in[(size_t)n * l->c + j];
                        out[(size_t)n * l->k + o] = sum;
                    }
                break;
            case REF_SOFTMAX_CE: {
                /* loss = mean_n (logsumexp(z_n) - z_n[label]); dz = (softmax - onehot) / N */
                loss = 0;
                for (int n = 0; n < l->n; n++) {
                    const double *z = in + (size_t)n * l->k;
                    double top = z[0], sum = 0;
                    for (int j = 1; j < l->k; j++) top = z[j] > top ? z[j] : top;
                    for (int j = 0; j < l->k; j++) sum += exp(z[j] - top);
                    loss += (log(sum) + top - z[labels[n]]) / l->n;
                    for (int j = 0; j < l->k; j++)
                        d[l->input][(size_t)n * l->k + j] = (exp(z[j] - top) / sum - (j == labels[n])) / l->n;
                }
                break;
            }
            }
        }
        for (int i = net->layer_count - 1; i >= 0; i--) {
            const ref_layer *l = &net->layers[i];
            double *in = t[l->input], *din = d[l->input], *dout = d[l->output];
            switch (l->op) {
            case REF_CONV:
                conv_backward(l, in, params + l->weight, dout, l->input == 0 ? NULL : din, grads + l->weight, scratch);
                break;
            case REF_BN:
                bn_backward(l, t[l->output], dout, params + l->weight, &sv[i], din,
                            l->residual >= 0 ? d[l->residual] : NULL, grads + l->weight, grads + l->bias, scratch);
                break;
            case REF_MAXPOOL: maxpool(l, in, NULL, dout, din); break;
            case REF_AVGPOOL:
                for (int n = 0; n < l->n; n++)
                    for (int c = 0; c < l->c; c++)
                        for (int j = 0; j < l->h * l->w; j++)
                            din[((size_t)n * l->c + c) * l->h * l->w + j] += dout[(size_t)n * l->c + c] / (l->h * l->w);
                break;
            case REF_FC:
                for (int n = 0; n < l->n; n++)
                    for (int o = 0; o < l->k; o++) {
                        double g = dout[(size_t)n * l->k + o];
                        grads[l->bias + o] += g;
                        for (int j = 0; j < l->c; j++) {
                            grads[l->weight + (size_t)o * l->c + j] += g * in[(size_t)n * l->c + j];
                            din[(size_t)n * l->c + j] += g * params[l->weight + (size_t)o * l->c + j];
                        }
                    }
                break;
            case REF_SOFTMAX_CE: break;
            }
        }
    }
    for (int i = 0; t && d && i < nt; i++) free(t[i]), free(d[i]);
    for (int i = 0; sv && i < net->layer_count; i++) free(sv[i].mean), free(sv[i].invstd), free(sv[i].xhat);
    free(t), free(d), free(sv), free(scratch);
    return loss;
}
