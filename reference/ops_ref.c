/* ops_ref.c - plain C reference of the non-convolution ops (contract in ops_ref.h):
 * straight loops over the formulas, double accumulation. */
#include "ops_ref.h"

#include <math.h>
#include <string.h>

#define AT3(t, c, hw, n_, c_, i_) (t)[((size_t)(n_) * (c) + (c_)) * (hw) + (i_)]

void bn_stats_ref(int n, int c, int hw, double momentum, double eps, const float *y, const float *running_mean_in,
                  const float *running_var_in, double *mean, double *invstd, double *running_mean, double *running_var)
{
    const double m = (double)n * hw;
    for (int ch = 0; ch < c; ch++) {
        double sum = 0, sq = 0;
        for (int b = 0; b < n; b++)
            for (int i = 0; i < hw; i++) sum += AT3(y, c, hw, b, ch, i);
        const double mu = sum / m;
        for (int b = 0; b < n; b++)
            for (int i = 0; i < hw; i++) {
                const double d = AT3(y, c, hw, b, ch, i) - mu;
                sq += d * d;
            }
        const double var = sq / m;
        mean[ch] = mu;
        invstd[ch] = 1.0 / sqrt(var + eps);
        running_mean[ch] = (1 - momentum) * running_mean_in[ch] + momentum * mu;
        running_var[ch] = (1 - momentum) * running_var_in[ch] + momentum * var * m / (m - 1);
    }
}

void bn_apply_ref(int n, int c, int hw, int relu, int eval, double eps, const float *y, const float *mean,
                  const float *invstd, const float *gamma, const float *beta, const float *residual,
                  const float *running_mean, const float *running_var, double *out)
{
    for (int b = 0; b < n; b++)
        for (int ch = 0; ch < c; ch++) {
            const double mu = eval ? running_mean[ch] : mean[ch];
            const double s = eval ? 1.0 / sqrt((double)running_var[ch] + eps) : invstd[ch];
            for (int i = 0; i < hw; i++) {
                const size_t at = ((size_t)b * c + ch) * hw + i;
                double v = gamma[ch] * (y[at] - mu) * s + beta[ch];
                if (residual) v += residual[at];
                if (relu && v < 0) v = 0;
                out[at] = v;
            }
        }
}

static float bits_to_float(uint32_t b)
{
    float f;
    memcpy(&f, &b, sizeof f);
    return f;
}

float bf16_to_float_ref(uint16_t b) { return bits_to_float((uint32_t)b << 16); }

uint16_t bf16_round_ref(float x)
{
    uint32_t bits;
    memcpy(&bits, &x, sizeof bits);
    if (isnan(x)) return (uint16_t)((bits >> 16) | 0x0040u);
    if (isinf(x)) return (uint16_t)(bits >> 16);
    /* The bf16 values on either side of x (toward zero: the truncation; away from zero:
     * the next one, 2^128 past the largest finite value), compared by exact distance. */
    const uint16_t low = (uint16_t)(bits >> 16);
    const double toward = bf16_to_float_ref(low);
    const double away =
        (low & 0x7fffu) == 0x7f7fu ? copysign(ldexp(1.0, 128), x) : bf16_to_float_ref((uint16_t)(low + 1));
    const double d_toward = fabs((double)x - toward), d_away = fabs(away - (double)x);
    if (d_toward < d_away) return low;
    if (d_away < d_toward) return (uint16_t)(low + 1); /* low + 1 of the largest value is infinity */
    return (low & 1u) ? (uint16_t)(low + 1) : low;     /* a tie: the even one */
}

void bn_backward_ref(int n, int c, int hw, int mask_mode, const float *dout, const uint32_t *mask_bits,
                     const float *relu_out, const float *y, const float *mean, const float *invstd, const float *gamma,
                     double *dgamma, double *dbeta, double *dy, double *dres)
{
    const double m = (double)n * hw;
    for (int ch = 0; ch < c; ch++) {
        double sb = 0, sg = 0;
        for (int pass = 0; pass < 2; pass++)
            for (int b = 0; b < n; b++)
                for (int i = 0; i < hw; i++) {
                    const size_t at = ((size_t)b * c + ch) * hw + i;
                    int active = 1;
                    if (mask_mode == 1) active = (mask_bits[at / 32] >> (at % 32)) & 1u;
                    if (mask_mode == 2) active = relu_out[at] > 0;
                    const double dz = active ? dout[at] : 0.0;
                    const double xhat = ((double)y[at] - mean[ch]) * invstd[ch];
                    if (pass == 0) {
                        sb += dz;
                        sg += dz * xhat;
                        if (dres) dres[at] = dz;
                    } else {
                        dy[at] = (double)gamma[ch] * invstd[ch] * (dz - sb / m - xhat * sg / m);
                    }
                }
        dbeta[ch] = sb;
        dgamma[ch] = sg;
    }
}

void relu_mask_fwd_ref(size_t count, const float *x, float *y, uint32_t *mask)
{
    memset(mask, 0, (count + 31) / 32 * sizeof *mask);
    for (size_t i = 0; i < count; i++) {
        y[i] = isnan(x[i]) || x[i] >= 0 ? x[i] : 0.0f;
        if (y[i] > 0) mask[i / 32] |= 1u << (i % 32);
    }
}

void relu_mask_bwd_ref(size_t count, const float *dy, const uint32_t *mask, float *dx)
{
    for (size_t i = 0; i < count; i++) dx[i] = (mask[i / 32] >> (i % 32)) & 1u ? dy[i] : 0.0f;
}

void maxpool_out_size(int h, int w, int r, int stride, int pad, int *p, int *q)
{
    *p = (h + 2 * pad - r) / stride + 1;
    *q = (w + 2 * pad - r) / stride + 1;
}

void maxpool_fwd_ref(int n, int c, int h, int w, int r, int stride, int pad, const float *x, float *y, uint8_t *argmax)
{
    int p, q;
    maxpool_out_size(h, w, r, stride, pad, &p, &q);
    for (int plane = 0; plane < n * c; plane++)
        for (int oy = 0; oy < p; oy++)
            for (int ox = 0; ox < q; ox++) {
                float best = 0;
                int arg = -1;
                for (int i = 0; i < r; i++)
                    for (int j = 0; j < r; j++) {
                        const int ih = oy * stride + i - pad, iw = ox * stride + j - pad;
                        if (ih < 0 || ih >= h || iw < 0 || iw >= w) continue;
                        const float v = x[((size_t)plane * h + ih) * w + iw];
                        if (arg < 0 || (!isnan(best) && (v > best || isnan(v)))) best = v, arg = i * r + j;
                    }
                const size_t o = ((size_t)plane * p + oy) * q + ox;
                y[o] = best;
                argmax[o] = (uint8_t)arg;
            }
}

void maxpool_bwd_ref(int n, int c, int h, int w, int r, int stride, int pad, const float *dy, const uint8_t *argmax,
                     double *dx)
{
    int p, q;
    maxpool_out_size(h, w, r, stride, pad, &p, &q);
    memset(dx, 0, sizeof *dx * (size_t)n * c * h * w);
    for (int plane = 0; plane < n * c; plane++)
        for (int oy = 0; oy < p; oy++)
            for (int ox = 0; ox < q; ox++) {
                const size_t o = ((size_t)plane * p + oy) * q + ox;
                const int ih = oy * stride + argmax[o] / r - pad, iw = ox * stride + argmax[o] % r - pad;
                dx[((size_t)plane * h + ih) * w + iw] += dy[o];
            }
}

void avgpool_fwd_ref(int n, int c, int hw, const float *x, double *y)
{
    for (size_t row = 0; row < (size_t)n * c; row++) {
        double sum = 0;
        for (int i = 0; i < hw; i++) sum += x[row * hw + i];
        y[row] = sum / hw;
    }
}

void avgpool_bwd_ref(int n, int c, int hw, const float *dy, double *dx)
{
    for (size_t row = 0; row < (size_t)n * c; row++)
        for (int i = 0; i < hw; i++) dx[row * hw + i] = (double)dy[row] / hw;
}

void fc_fwd_ref(int n, int in, int out, const float *x, const float *w, const float *b, double *y)
{
    for (int s = 0; s < n; s++)
        for (int o = 0; o < out; o++) {
            double sum = b[o];
            for (int i = 0; i < in; i++) sum += (double)x[(size_t)s * in + i] * w[(size_t)o * in + i];
            y[(size_t)s * out + o] = sum;
        }
}

void fc_bwd_data_ref(int n, int in, int out, const float *dy, const float *w, double *dx)
{
    for (int s = 0; s < n; s++)
        for (int i = 0; i < in; i++) {
            double sum = 0;
            for (int o = 0; o < out; o++) sum += (double)dy[(size_t)s * out + o] * w[(size_t)o * in + i];
            dx[(size_t)s * in + i] = sum;
        }
}

void fc_bwd_weight_ref(int n, int in, int out, const float *dy, const float *x, double *dw, double *db)
{
    for (int o = 0; o < out; o++) {
        double sb = 0;
        for (int s = 0; s < n; s++) sb += dy[(size_t)s * out + o];
        db[o] = sb;
        for (int i = 0; i < in; i++) {
            double sum = 0;
            for (int s = 0; s < n; s++) sum += (double)dy[(size_t)s * out + o] * x[(size_t)s * in + i];
            dw[(size_t)o * in + i] = sum;
        }
    }
}

double softmax_ce_ref(int n, int classes, const float *logits, const int32_t *labels, double *dlogits, int *correct)
{
    double loss = 0;
    if (correct) *correct = 0;
    for (int s = 0; s < n; s++) {
        const float *z = logits + (size_t)s * classes;
        const int bad = labels[s] < 0 || labels[s] >= classes;
        const int label = labels[s] < 0 ? 0 : labels[s] >= classes ? classes - 1 : labels[s];
        double top = z[0], sum = 0;
        int first = 0;
        for (int j = 1; j < classes; j++)
            if (z[j] > top) top = z[j], first = j;
        if (correct && !bad && first == labels[s]) ++*correct;
        for (int j = 0; j < classes; j++) sum += exp(z[j] - top);
        loss += bad ? NAN : log(sum) + top - z[label];
        for (int j = 0; j < classes; j++) dlogits[(size_t)s * classes + j] = (exp(z[j] - top) / sum - (j == label)) / n;
    }
    return loss / n;
}

void sgd_ref(size_t count, const float *params, const float *grads, const float *momentum_buf, double lr,
             double momentum, double weight_decay, double *params_out, double *momentum_out)
{
    for (size_t i = 0; i < count; i++) {
        const double d = (double)grads[i] + weight_decay * params[i];
        const double buf = momentum * momentum_buf[i] + d;
        momentum_out[i] = buf;
        params_out[i] = params[i] - lr * buf;
    }
}
