/*
 * logreg.h: the demo's machine learning, in plain C and nothing to do with
 * the transport: synthetic data shards, logistic regression trained by
 * mini-batch SGD, evaluation. Deterministic: every random draw comes from a
 * seeded splitmix64 generator.
 *
 * The task: NFEAT features, labels from a fixed "true" linear model plus
 * noise. The shards are not identically distributed: collaborator c sees
 * its own two features (2c, 2c+1) spread widely and the other four nearly
 * constant, at offsets that differ between collaborators (feature skew), and
 * the shards have different sizes. A model trained on one shard alone
 * learns its own two weights and folds the rest into the bias; only the
 * federation sees every feature vary.
 */
#ifndef OFL_DEMO_LOGREG_H
#define OFL_DEMO_LOGREG_H

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define NFEAT 6
#define NSHARDS 3

/* ---- random numbers ------------------------------------------------------ */

typedef struct rng {
    uint64_t state;
} rng;

static inline uint64_t rng_next(rng *r) { /* splitmix64 */
    uint64_t z = (r->state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static inline double rng_uniform(rng *r) { /* in (0, 1) */
    return ((double)(rng_next(r) >> 11) + 0.5) / 9007199254740992.0;
}

static inline double rng_normal(rng *r) { /* Box-Muller */
    double u = rng_uniform(r), v = rng_uniform(r);
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

/* ---- data ---------------------------------------------------------------- */

typedef struct dataset {
    int n;
    float *x; /* n rows of NFEAT features */
    float *y; /* n labels, 0 or 1 */
} dataset;

static const double TRUE_W[NFEAT] = {2.0, -1.5, 1.5, 2.0, -2.0, 1.0};
static const double TRUE_B = 0.25;
static const double LABEL_NOISE = 0.5;

/* Where shard c's nearly constant features sit (its own two are unused). */
static const double SHARD_OFFSET[NSHARDS][NFEAT] = {
    {0.0, 0.0, 1.0, 1.0, 1.0, -1.0},
    {1.0, 1.0, 0.0, 0.0, 1.0, 1.0},
    {-1.0, -1.0, 1.0, -0.5, 0.0, 0.0},
};

static inline void dataset_alloc(dataset *d, int n) {
    d->n = n;
    d->x = (float *)calloc((size_t)n * NFEAT, sizeof(float));
    d->y = (float *)calloc((size_t)n, sizeof(float));
    if (!d->x || !d->y) abort();
}

static inline void dataset_free(dataset *d) {
    free(d->x);
    free(d->y);
    memset(d, 0, sizeof *d);
}

/* n samples of shard c (0..NSHARDS-1) drawn with `seed`. */
static inline void make_shard(dataset *d, int c, int n, uint64_t seed) {
    rng r = {seed};
    dataset_alloc(d, n);
    for (int i = 0; i < n; i++) {
        float *x = d->x + (size_t)i * NFEAT;
        double z = TRUE_B;
        for (int j = 0; j < NFEAT; j++) {
            bool own = j / 2 == c;
            double v = own ? 1.5 * rng_normal(&r) : SHARD_OFFSET[c][j] + 0.1 * rng_normal(&r);
            x[j] = (float)v;
            z += TRUE_W[j] * v;
        }
        d->y[i] = z + LABEL_NOISE * rng_normal(&r) > 0.0 ? 1.0f : 0.0f;
    }
}

/* The union of `count` datasets. */
static inline void dataset_concat(dataset *out, const dataset *parts, int count) {
    int n = 0;
    for (int k = 0; k < count; k++) n += parts[k].n;
    dataset_alloc(out, n);
    int at = 0;
    for (int k = 0; k < count; k++) {
        memcpy(out->x + (size_t)at * NFEAT, parts[k].x, (size_t)parts[k].n * NFEAT * sizeof(float));
        memcpy(out->y + at, parts[k].y, (size_t)parts[k].n * sizeof(float));
        at += parts[k].n;
    }
}

/* ---- logistic regression ---------------------------------------------- */

typedef struct model {
    float w[NFEAT];
    float b;
} model;

#define LEARNING_RATE 0.05
#define BATCH_SIZE 16

static inline double sigmoid(double z) { return 1.0 / (1.0 + exp(-z)); }

static inline double predict(const model *m, const float *x) {
    double z = m->b;
    for (int j = 0; j < NFEAT; j++) z += (double)m->w[j] * x[j];
    return sigmoid(z);
}

static inline double log_loss(double p, float y) {
    const double eps = 1e-7;
    p = p < eps ? eps : (p > 1.0 - eps ? 1.0 - eps : p);
    return y > 0.5f ? -log(p) : -log(1.0 - p);
}

/* Mean log loss and accuracy of `m` on `d`. */
static inline void evaluate(const model *m, const dataset *d, double *loss, double *acc) {
    double total = 0.0;
    int correct = 0;
    for (int i = 0; i < d->n; i++) {
        double p = predict(m, d->x + (size_t)i * NFEAT);
        total += log_loss(p, d->y[i]);
        correct += (p >= 0.5) == (d->y[i] > 0.5f);
    }
    *loss = d->n ? total / d->n : 0.0;
    *acc = d->n ? (double)correct / d->n : 0.0;
}

/* `epochs` epochs of mini-batch SGD on `d` (shuffled with `seed`); returns
 * the mean training loss of the last epoch. */
static inline double train(model *m, const dataset *d, int epochs, uint64_t seed) {
    rng r = {seed};
    int *order = (int *)malloc((size_t)d->n * sizeof(int));
    if (!order) abort();
    for (int i = 0; i < d->n; i++) order[i] = i;
    double epoch_loss = 0.0;
    for (int e = 0; e < epochs; e++) {
        for (int i = d->n - 1; i > 0; i--) { /* Fisher-Yates */
            int k = (int)(rng_next(&r) % (uint64_t)(i + 1));
            int t = order[i];
            order[i] = order[k];
            order[k] = t;
        }
        epoch_loss = 0.0;
        for (int start = 0; start < d->n; start += BATCH_SIZE) {
            int end = start + BATCH_SIZE < d->n ? start + BATCH_SIZE : d->n;
            double gw[NFEAT] = {0}, gb = 0.0;
            for (int i = start; i < end; i++) {
                const float *x = d->x + (size_t)order[i] * NFEAT;
                float y = d->y[order[i]];
                double p = predict(m, x);
                epoch_loss += log_loss(p, y);
                for (int j = 0; j < NFEAT; j++) gw[j] += (p - y) * x[j];
                gb += p - y;
            }
            double step = LEARNING_RATE / (end - start);
            for (int j = 0; j < NFEAT; j++) m->w[j] -= (float)(step * gw[j]);
            m->b -= (float)(step * gb);
        }
    }
    free(order);
    return d->n ? epoch_loss / d->n : 0.0;
}

#endif /* OFL_DEMO_LOGREG_H */
