/* Synthetic person-keypoint images and their COCO annotations.
 *
 * A scene is sampled completely (layout, poses, colours) before anything is
 * drawn, from an RNG keyed by (seed, image index), so the output is
 * reproducible and `no_people` can render the very same scene minus the
 * figures. Keypoint visibility comes from a second rendering of the scene
 * without anti-aliasing in which every object is painted with its own id:
 * a keypoint covered by another object's id is occluded (v=1). */
#include "dataio/synth.h"

#include <cairo.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <jpeglib.h> /* after stdio.h: it uses FILE */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/check.h"
#include "core/rng.h"

/* Fatal errors inside the parallel rendering: the first thread to fail enters
 * the critical section and exits; others that fail meanwhile wait there, so
 * exactly one line is printed. */
#define SYNTH_CHECK(cond, ...) \
    do { if (!(cond)) { _Pragma("omp critical(synth_die)") core_die_at(__FILE__, __LINE__, __VA_ARGS__); } } while (0)

#define NKP 17 /* COCO-17 order throughout this file */
enum { NOSE, L_EYE, R_EYE, L_EAR, R_EAR, L_SHO, R_SHO, L_ELB, R_ELB, L_WRI, R_WRI,
       L_HIP, R_HIP, L_KNEE, R_KNEE, L_ANK, R_ANK };

static const char *const coco_kp_names[NKP] = {
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle"};
/* official person skeleton, 1-based COCO-17 indices */
static const int coco_skeleton[19][2] = {
    {16, 14}, {14, 12}, {17, 15}, {15, 13}, {12, 13}, {6, 12}, {7, 13}, {6, 7}, {6, 8}, {7, 9},
    {8, 10}, {9, 11}, {2, 3}, {1, 2}, {1, 3}, {2, 4}, {3, 5}, {4, 6}, {5, 7}};

#define MAX_MAIN 5
#define MAX_TINY 4
#define MAX_CROWD_MEMBERS 16
#define MAX_CLUTTER 24
#define MAX_OCCLUDERS 3
#define MAX_POLYS 16
#define DEG (M_PI / 180.0)

typedef struct { double r, g, b; } rgb_t;

static rgb_t hsv(double h, double s, double v)
{
    h = fmod(h, 1.0) * 6;
    int i = (int)h;
    double f = h - i, p = v * (1 - s), q = v * (1 - s * f), t = v * (1 - s * (1 - f));
    switch (i % 6) {
    case 0: return (rgb_t){v, t, p};
    case 1: return (rgb_t){q, v, p};
    case 2: return (rgb_t){p, v, t};
    case 3: return (rgb_t){p, q, v};
    case 4: return (rgb_t){t, p, v};
    default: return (rgb_t){v, p, q};
    }
}
static rgb_t muted(core_sm64 *r) { return hsv(core_sm64_uniform(r), core_sm64_range(r, 0, 0.3), core_sm64_range(r, 0.3, 0.85)); }

/* ---- scene description ---- */
typedef struct { double x, y; } pt_t;

typedef struct {
    pt_t kp[NKP];
    pt_t neck, head;
    double height, radius, t_arm, t_leg;
    int facing;        /* +1 faces the camera, -1 shows its back */
    int face_labelled; /* nose and eyes can be annotated (face visible) */
    rgb_t shirt, pants, skin, hair;
} figure_t;

typedef struct {
    int kind; /* 0 rectangle, 1 ellipse, 2 thick line */
    double x, y, a, b, angle;
    rgb_t color;
    double alpha;
} shape_t;

typedef struct {
    int width, height;
    rgb_t grad0, grad1;
    double grad_angle;
    int texture;        /* 0 stripes, 1 checker, 2 dots */
    double tex_period, tex_angle, tex_alpha;
    rgb_t tex_color;
    shape_t clutter[MAX_CLUTTER];
    int nclutter;
    figure_t main[MAX_MAIN];
    int nmain;
    figure_t tiny[MAX_TINY];
    int ntiny;
    figure_t crowd[MAX_CROWD_MEMBERS];
    int ncrowd;
    shape_t occluder[MAX_OCCLUDERS];
    int noccluders;
    uint64_t noise_key;
} scene_t;

static pt_t add(pt_t a, pt_t b, double s) { return (pt_t){a.x + s * b.x, a.y + s * b.y}; }
/* unit vector `down` turned by angle t toward side direction d (both unit) */
static pt_t swing(pt_t down, pt_t d, double t) { return (pt_t){down.x * cos(t) + d.x * sin(t), down.y * cos(t) + d.y * sin(t)}; }

static double arm_raise(core_sm64 *r)
{
    double u = core_sm64_uniform(r);
    return (u < 0.55 ? core_sm64_range(r, -10, 45) : u < 0.88 ? core_sm64_range(r, 45, 120) : core_sm64_range(r, 120, 170)) * DEG;
}
static double arm_bend(core_sm64 *r)
{
    double b = core_sm64_uniform(r) < 0.5 ? core_sm64_range(r, 0, 30) : core_sm64_range(r, 30, 140);
    return (core_sm64_uniform(r) < 0.6 ? b : -b) * DEG;
}

/* An articulated figure of standing height h with its hip centre at (x, y).
 * Proportions follow the usual 7.5-head canon; angles are in the image plane. */
static void sample_figure(core_sm64 *r, figure_t *f, double x, double y, double h)
{
    memset(f, 0, sizeof *f);
    f->height = h;
    double roll = core_sm64_uniform(r) < 0.06 ? core_sm64_range(r, 50, 100) * (core_sm64_uniform(r) < 0.5 ? -1 : 1) * DEG
                                    : fmax(-25, fmin(25, 8 * core_sm64_normal(r))) * DEG;
    double lean = fmax(-20, fmin(20, 7 * core_sm64_normal(r))) * DEG;
    double yaw = core_sm64_range(r, -55, 55) * DEG;
    f->facing = core_sm64_uniform(r) < 0.8 ? 1 : -1;
    f->face_labelled = f->facing > 0;
    double cy = cos(yaw);

    pt_t hip = {x, y};
    pt_t up = {sin(roll + lean), -cos(roll + lean)};
    pt_t lat = {-up.y, up.x}; /* image-right when upright */
    pt_t down = {-up.x, -up.y};
    /* The person's right side is on the image's left when they face us. */
    pt_t rdir = {-f->facing * lat.x, -f->facing * lat.y};
    pt_t ldir = {-rdir.x, -rdir.y};

    f->neck = add(hip, up, 0.30 * h);
    f->kp[R_SHO] = add(f->neck, rdir, 0.115 * h * cy);
    f->kp[L_SHO] = add(f->neck, ldir, 0.115 * h * cy);
    f->kp[R_HIP] = add(hip, rdir, 0.08 * h * cy);
    f->kp[L_HIP] = add(hip, ldir, 0.08 * h * cy);

    double tilt = fmax(-25, fmin(25, 10 * core_sm64_normal(r))) * DEG;
    pt_t hup = {up.x * cos(tilt) - up.y * sin(tilt), up.x * sin(tilt) + up.y * cos(tilt)};
    pt_t hlat = {-hup.y, hup.x};
    f->radius = 0.065 * h;
    f->head = add(f->neck, hup, 0.11 * h);
    double R = f->radius, shift = sin(yaw) * 0.45 * R; /* the face turns with the yaw */
    pt_t hr = {-f->facing * hlat.x, -f->facing * hlat.y};
    f->kp[NOSE] = add(add(f->head, hlat, shift), hup, -0.2 * R);
    f->kp[R_EYE] = add(add(add(f->head, hlat, shift), hr, 0.38 * R * cy), hup, 0.15 * R);
    f->kp[L_EYE] = add(add(add(f->head, hlat, shift), hr, -0.38 * R * cy), hup, 0.15 * R);
    f->kp[R_EAR] = add(add(f->head, hr, 0.95 * R * (0.55 + 0.45 * cy)), hlat, -0.3 * shift);
    f->kp[L_EAR] = add(add(f->head, hr, -0.95 * R * (0.55 + 0.45 * cy)), hlat, -0.3 * shift);

    for (int side = 0; side < 2; side++) {
        pt_t d = side ? ldir : rdir;
        int sho = side ? L_SHO : R_SHO, elb = side ? L_ELB : R_ELB, wri = side ? L_WRI : R_WRI;
        double a1 = arm_raise(r), a2 = a1 + arm_bend(r);
        f->kp[elb] = add(f->kp[sho], swing(down, d, a1), 0.165 * h);
        f->kp[wri] = add(f->kp[elb], swing(down, d, a2), 0.145 * h);
        int hp = side ? L_HIP : R_HIP, kn = side ? L_KNEE : R_KNEE, an = side ? L_ANK : R_ANK;
        double l1 = (core_sm64_uniform(r) < 0.7 ? core_sm64_range(r, -8, 18) : core_sm64_range(r, 18, 50)) * DEG;
        double k = (core_sm64_uniform(r) < 0.7 ? core_sm64_range(r, 0, 15) : core_sm64_range(r, 15, 95)) * DEG;
        double l2 = l1 + (core_sm64_uniform(r) < 0.7 ? -k : k);
        f->kp[kn] = add(f->kp[hp], swing(down, d, l1), 0.245 * h);
        f->kp[an] = add(f->kp[kn], swing(down, d, l2), 0.245 * h);
    }
    f->t_arm = 0.05 * h * core_sm64_range(r, 0.8, 1.25);
    f->t_leg = 0.065 * h * core_sm64_range(r, 0.8, 1.25);
    f->shirt = hsv(core_sm64_uniform(r), core_sm64_range(r, 0.55, 1), core_sm64_range(r, 0.45, 1));
    f->pants = hsv(core_sm64_uniform(r), core_sm64_range(r, 0.3, 0.9), core_sm64_range(r, 0.15, 0.6));
    static const rgb_t skins[] = {{0.96, 0.80, 0.69}, {0.87, 0.67, 0.52}, {0.72, 0.51, 0.36},
                                  {0.55, 0.37, 0.24}, {0.36, 0.23, 0.15}};
    f->skin = skins[core_sm64_int(r, 0, 4)];
    f->hair = hsv(core_sm64_range(r, 0.02, 0.12), core_sm64_range(r, 0.3, 0.9), core_sm64_range(r, 0.05, 0.45));
}

static void sample_shape(core_sm64 *r, shape_t *s, int w, int h, double size)
{
    s->kind = core_sm64_int(r, 0, 2);
    s->x = core_sm64_range(r, 0, w);
    s->y = core_sm64_range(r, 0, h);
    s->a = core_sm64_range(r, 0.2, 1) * size;
    s->b = core_sm64_range(r, 0.1, 1) * size;
    if (s->kind == 2) s->b = core_sm64_range(r, 2, 0.06 * size + 3);
    s->angle = core_sm64_range(r, 0, M_PI);
    s->color = muted(r);
    s->alpha = core_sm64_range(r, 0.5, 1);
}

static void sample_scene(uint64_t seed, int index, scene_t *sc)
{
    core_sm64 rr = {core_rng_mix64(seed * 0x100000001b3ULL + (uint64_t)index * CORE_RNG_GOLDEN + 1)};
    core_sm64 *r = &rr;
    memset(sc, 0, sizeof *sc);
    int w = sc->width = 8 * core_sm64_int(r, 40, 80);
    int h = sc->height = 8 * core_sm64_int(r, 30, 60);
    sc->grad0 = muted(r);
    sc->grad1 = muted(r);
    sc->grad_angle = core_sm64_range(r, 0, 2 * M_PI);
    sc->texture = core_sm64_int(r, 0, 2);
    sc->tex_period = core_sm64_range(r, 6, 40);
    sc->tex_angle = core_sm64_range(r, 0, M_PI);
    sc->tex_alpha = core_sm64_range(r, 0.08, 0.3);
    sc->tex_color = muted(r);
    sc->nclutter = core_sm64_int(r, 4, MAX_CLUTTER);
    for (int i = 0; i < sc->nclutter; i++) sample_shape(r, &sc->clutter[i], w, h, 0.25 * h);

    if (core_sm64_uniform(r) < 0.25) { /* a crowd: many small people packed into one region */
        double cx = core_sm64_range(r, 0.2, 0.8) * w, cy = core_sm64_range(r, 0.25, 0.75) * h;
        double ext = core_sm64_range(r, 0.12, 0.3) * w;
        sc->ncrowd = core_sm64_int(r, 6, MAX_CROWD_MEMBERS);
        for (int i = 0; i < sc->ncrowd; i++)
            sample_figure(r, &sc->crowd[i], cx + core_sm64_range(r, -ext, ext), cy + core_sm64_range(r, -0.3, 0.3) * ext,
                          core_sm64_range(r, 16, 34));
    }
    sc->ntiny = core_sm64_int(r, 0, MAX_TINY - 1);
    for (int i = 0; i < sc->ntiny; i++)
        sample_figure(r, &sc->tiny[i], core_sm64_range(r, 0.05, 0.95) * w, core_sm64_range(r, 0.15, 0.85) * h,
                      core_sm64_range(r, 14, 34));

    sc->nmain = core_sm64_int(r, 1, 4);
    for (int i = 0; i < sc->nmain; i++) {
        double ph = core_sm64_range(r, 0.3, 1.05) * h;
        if (core_sm64_uniform(r) < 0.15) ph = core_sm64_range(r, 1.05, 1.4) * h; /* close-up, truncated by the frame */
        double x = core_sm64_range(r, 0.05, 0.95) * w;
        if (i > 0 && core_sm64_uniform(r) < 0.35) x = sc->main[i - 1].kp[L_HIP].x + core_sm64_range(r, -0.35, 0.35) * ph;
        double ylo = 0.45 * ph, yhi = h - 0.35 * ph;
        double y = ylo < yhi ? core_sm64_range(r, ylo, yhi) : core_sm64_range(r, yhi, ylo);
        y += core_sm64_range(r, -0.1, 0.1) * ph;
        sample_figure(r, &sc->main[i], x, y, ph);
    }
    /* Farther people (higher feet) are drawn first so nearer ones overlap them. */
    for (int i = 1; i < sc->nmain; i++)
        for (int j = i; j > 0 && sc->main[j].kp[L_HIP].y + 0.5 * sc->main[j].height <
                                     sc->main[j - 1].kp[L_HIP].y + 0.5 * sc->main[j - 1].height; j--) {
            figure_t t = sc->main[j];
            sc->main[j] = sc->main[j - 1];
            sc->main[j - 1] = t;
        }
    sc->noccluders = core_sm64_uniform(r) < 0.45 ? core_sm64_int(r, 1, MAX_OCCLUDERS) : 0;
    for (int i = 0; i < sc->noccluders; i++) sample_shape(r, &sc->occluder[i], w, h, 0.2 * h);
    sc->noise_key = core_sm64_next(r);
}

/* ---- drawing ---- */
/* paint: real colours; when label >= 0 every fill uses the id colour instead */
static void set_color(cairo_t *cr, rgb_t c, double alpha, int label)
{
    if (label >= 0) cairo_set_source_rgb(cr, ((label >> 16) & 255) / 255.0, ((label >> 8) & 255) / 255.0, (label & 255) / 255.0);
    else cairo_set_source_rgba(cr, c.r, c.g, c.b, alpha);
}

static void segment(cairo_t *cr, pt_t a, pt_t b, double width)
{
    cairo_set_line_width(cr, width);
    cairo_move_to(cr, a.x, a.y);
    cairo_line_to(cr, b.x, b.y);
    cairo_stroke(cr);
}

static void disc(cairo_t *cr, pt_t c, double radius)
{
    cairo_new_sub_path(cr);
    cairo_arc(cr, c.x, c.y, radius, 0, 2 * M_PI);
    cairo_fill(cr);
}

static rgb_t shade(rgb_t c, double f) { return (rgb_t){c.r * f, c.g * f, c.b * f}; }

static void draw_figure(cairo_t *cr, const figure_t *f, int label)
{
    cairo_set_line_cap(cr, CAIRO_LINE_CAP_ROUND);
    cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
    const pt_t *k = f->kp;
    set_color(cr, f->pants, 1, label);
    segment(cr, k[R_HIP], k[R_KNEE], f->t_leg);
    segment(cr, k[R_KNEE], k[R_ANK], f->t_leg * 0.85);
    set_color(cr, shade(f->pants, 0.85), 1, label);
    segment(cr, k[L_HIP], k[L_KNEE], f->t_leg);
    segment(cr, k[L_KNEE], k[L_ANK], f->t_leg * 0.85);
    /* torso: the shoulder-hip quadrilateral, thickened by a round stroke */
    set_color(cr, f->shirt, 1, label);
    cairo_move_to(cr, k[L_SHO].x, k[L_SHO].y);
    cairo_line_to(cr, k[R_SHO].x, k[R_SHO].y);
    cairo_line_to(cr, k[R_HIP].x, k[R_HIP].y);
    cairo_line_to(cr, k[L_HIP].x, k[L_HIP].y);
    cairo_close_path(cr);
    cairo_fill_preserve(cr);
    cairo_set_line_width(cr, f->t_arm);
    cairo_stroke(cr);
    set_color(cr, f->skin, 1, label);
    segment(cr, f->neck, f->head, f->t_arm * 0.7);
    for (int side = 0; side < 2; side++) {
        int sho = side ? L_SHO : R_SHO, elb = side ? L_ELB : R_ELB, wri = side ? L_WRI : R_WRI;
        set_color(cr, shade(f->shirt, side ? 0.8 : 1.0), 1, label);
        segment(cr, k[sho], k[elb], f->t_arm);
        set_color(cr, shade(f->skin, side ? 0.9 : 1.0), 1, label);
        segment(cr, k[elb], k[wri], f->t_arm * 0.85);
        disc(cr, k[wri], f->t_arm * 0.6);
    }
    double R = f->radius;
    set_color(cr, shade(f->skin, 0.85), 1, label);
    disc(cr, k[L_EAR], 0.25 * R);
    disc(cr, k[R_EAR], 0.25 * R);
    set_color(cr, f->facing > 0 ? f->skin : f->hair, 1, label);
    disc(cr, f->head, R);
    if (f->facing > 0) {
        set_color(cr, f->hair, 1, label);
        cairo_new_sub_path(cr);
        cairo_arc(cr, f->head.x, f->head.y, R, M_PI * 1.12, M_PI * 1.88);
        cairo_close_path(cr);
        cairo_fill(cr);
        set_color(cr, (rgb_t){0.05, 0.05, 0.1}, 1, label);
        disc(cr, k[L_EYE], fmax(0.6, 0.13 * R));
        disc(cr, k[R_EYE], fmax(0.6, 0.13 * R));
        set_color(cr, shade(f->skin, 0.6), 1, label);
        disc(cr, k[NOSE], fmax(0.5, 0.1 * R));
    } else { /* ears in front of the hair when seen from behind */
        set_color(cr, shade(f->skin, 0.85), 1, label);
        disc(cr, k[L_EAR], 0.2 * R);
        disc(cr, k[R_EAR], 0.2 * R);
    }
}

static void draw_shape(cairo_t *cr, const shape_t *s, int label)
{
    set_color(cr, s->color, s->alpha, label);
    cairo_save(cr);
    cairo_translate(cr, s->x, s->y);
    cairo_rotate(cr, s->angle);
    if (s->kind == 0) {
        cairo_rectangle(cr, -s->a / 2, -s->b / 2, s->a, s->b);
        cairo_fill(cr);
    } else if (s->kind == 1) {
        cairo_scale(cr, s->a / 2, s->b / 2);
        cairo_arc(cr, 0, 0, 1, 0, 2 * M_PI);
        cairo_restore(cr);
        cairo_fill(cr);
        return;
    } else {
        cairo_set_line_cap(cr, CAIRO_LINE_CAP_BUTT);
        cairo_set_line_width(cr, s->b);
        cairo_move_to(cr, -s->a, 0);
        cairo_line_to(cr, s->a, 0);
        cairo_stroke(cr);
    }
    cairo_restore(cr);
}

static void draw_background(cairo_t *cr, const scene_t *sc)
{
    double w = sc->width, h = sc->height, ca = cos(sc->grad_angle), sa = sin(sc->grad_angle);
    cairo_pattern_t *g = cairo_pattern_create_linear(w / 2 - ca * w / 2, h / 2 - sa * h / 2, w / 2 + ca * w / 2, h / 2 + sa * h / 2);
    cairo_pattern_add_color_stop_rgb(g, 0, sc->grad0.r, sc->grad0.g, sc->grad0.b);
    cairo_pattern_add_color_stop_rgb(g, 1, sc->grad1.r, sc->grad1.g, sc->grad1.b);
    cairo_set_source(cr, g);
    cairo_paint(cr);
    cairo_pattern_destroy(g);

    cairo_save(cr);
    cairo_translate(cr, w / 2, h / 2);
    cairo_rotate(cr, sc->tex_angle);
    double d = hypot(w, h) / 2, p = sc->tex_period;
    set_color(cr, sc->tex_color, sc->tex_alpha, -1);
    for (double u = -d; u < d; u += p) {
        if (sc->texture == 0) {
            cairo_rectangle(cr, u, -d, p / 2, 2 * d);
        } else {
            for (double v = -d; v < d; v += p) {
                if (sc->texture == 1 && ((int)floor((u + d) / p) + (int)floor((v + d) / p)) % 2)
                    cairo_rectangle(cr, u, v, p, p);
                else if (sc->texture == 2) {
                    cairo_new_sub_path(cr);
                    cairo_arc(cr, u, v, p / 5, 0, 2 * M_PI);
                }
            }
        }
    }
    cairo_fill(cr);
    cairo_restore(cr);
    for (int i = 0; i < sc->nclutter; i++) draw_shape(cr, &sc->clutter[i], -1);
}

/* Ids in the label image: 0 background, 1.. figures (main first), then occluders. */
#define LABEL_MAIN(i) (1 + (i))
#define LABEL_OTHER 0x00ff00

static void draw_scene(cairo_t *cr, const scene_t *sc, int people, int labels)
{
    if (labels) {
        cairo_set_source_rgb(cr, 0, 0, 0);
        cairo_paint(cr);
    } else {
        draw_background(cr, sc);
    }
    if (people) {
        for (int i = 0; i < sc->ncrowd; i++) draw_figure(cr, &sc->crowd[i], labels ? LABEL_OTHER : -1);
        for (int i = 0; i < sc->ntiny; i++) draw_figure(cr, &sc->tiny[i], labels ? LABEL_OTHER : -1);
        for (int i = 0; i < sc->nmain; i++) draw_figure(cr, &sc->main[i], labels ? LABEL_MAIN(i) : -1);
    }
    for (int i = 0; i < sc->noccluders; i++) draw_shape(cr, &sc->occluder[i], labels ? LABEL_OTHER + 1 + i : -1);
}

/* Sensor-like noise keyed by the scene, so the texture is never flat. */
static void add_noise(unsigned char *data, int stride, int w, int h, uint64_t key)
{
    for (int y = 0; y < h; y++) {
        uint32_t *row = (uint32_t *)(data + (size_t)y * stride);
        for (int x = 0; x < w; x++) {
            uint64_t z = core_rng_mix64(key ^ ((uint64_t)y << 32 | (uint32_t)x));
            uint32_t px = row[x], out = 0;
            for (int c = 0; c < 3; c++) {
                int v = (int)((px >> (8 * c)) & 255) + (int)((z >> (8 * c)) & 15) - 7;
                out |= (uint32_t)(v < 0 ? 0 : v > 255 ? 255 : v) << (8 * c);
            }
            row[x] = out;
        }
    }
}

/* ---- files ---- */
static void make_dir(const char *path)
{
    if (mkdir(path, 0777) == 0) return;
    struct stat st;
    CHECK(errno == EEXIST && stat(path, &st) == 0 && S_ISDIR(st.st_mode), "synth: cannot create directory '%s': %s",
          path, errno == EEXIST ? "exists and is not a directory" : strerror(errno));
}

static void write_jpeg(const char *path, cairo_surface_t *s, int quality)
{
    char tmp[4300];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *fp = fopen(tmp, "wb");
    SYNTH_CHECK(fp, "synth: cannot write '%s': %s", tmp, strerror(errno));
    int w = cairo_image_surface_get_width(s), h = cairo_image_surface_get_height(s);
    int stride = cairo_image_surface_get_stride(s);
    const unsigned char *data = cairo_image_surface_get_data(s);
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr err;
    c.err = jpeg_std_error(&err);
    jpeg_create_compress(&c);
    jpeg_stdio_dest(&c, fp);
    c.image_width = w;
    c.image_height = h;
    c.input_components = 3;
    c.in_color_space = JCS_RGB;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, quality, TRUE);
    jpeg_start_compress(&c, TRUE);
    unsigned char *row = core_malloc((size_t)w * 3);
    while (c.next_scanline < (unsigned)h) {
        const uint32_t *src = (const uint32_t *)(data + (size_t)c.next_scanline * stride);
        for (int x = 0; x < w; x++) {
            row[3 * x] = (src[x] >> 16) & 255;
            row[3 * x + 1] = (src[x] >> 8) & 255;
            row[3 * x + 2] = src[x] & 255;
        }
        JSAMPROW rp = row;
        jpeg_write_scanlines(&c, &rp, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    free(row);
    SYNTH_CHECK(!ferror(fp) && fclose(fp) == 0, "synth: cannot write '%s' (disk full?)", tmp);
    SYNTH_CHECK(rename(tmp, path) == 0, "synth: cannot rename '%s' to '%s': %s", tmp, path, strerror(errno));
}

/* ---- annotations ---- */
static double round2(double v) { return round(v * 100) / 100; }

typedef struct { double xy[2 * 12]; int n; } poly_t; /* n points */

static void poly_segment(poly_t *p, pt_t a, pt_t b, double width)
{
    double dx = b.x - a.x, dy = b.y - a.y, len = hypot(dx, dy), hw = width / 2;
    if (len < 1e-9) { dx = 1; dy = 0; len = 1; }
    dx /= len;
    dy /= len;
    pt_t a2 = {a.x - dx * hw, a.y - dy * hw}, b2 = {b.x + dx * hw, b.y + dy * hw};
    double c[8] = {a2.x - dy * hw, a2.y + dx * hw, b2.x - dy * hw, b2.y + dx * hw,
                   b2.x + dy * hw, b2.y - dx * hw, a2.x + dy * hw, a2.y - dx * hw};
    memcpy(p->xy, c, sizeof c);
    p->n = 4;
}

/* The figure's rough outline as one polygon per body part (their union is the mask). */
static int figure_polys(const figure_t *f, poly_t *out)
{
    const pt_t *k = f->kp;
    int n = 0;
    static const int limbs[8][2] = {{R_HIP, R_KNEE}, {R_KNEE, R_ANK}, {L_HIP, L_KNEE}, {L_KNEE, L_ANK},
                                    {R_SHO, R_ELB}, {R_ELB, R_WRI}, {L_SHO, L_ELB}, {L_ELB, L_WRI}};
    for (int i = 0; i < 8; i++) poly_segment(&out[n++], k[limbs[i][0]], k[limbs[i][1]], i < 4 ? f->t_leg : f->t_arm);
    /* torso quadrilateral grown by half the stroke around its centre */
    pt_t q[4] = {k[L_SHO], k[R_SHO], k[R_HIP], k[L_HIP]};
    pt_t c = {(q[0].x + q[1].x + q[2].x + q[3].x) / 4, (q[0].y + q[1].y + q[2].y + q[3].y) / 4};
    for (int i = 0; i < 4; i++) {
        double dx = q[i].x - c.x, dy = q[i].y - c.y, d = hypot(dx, dy) + 1e-9, g = (d + f->t_arm * 0.6) / d;
        out[n].xy[2 * i] = c.x + dx * g;
        out[n].xy[2 * i + 1] = c.y + dy * g;
    }
    out[n++].n = 4;
    for (int i = 0; i < 10; i++) {
        out[n].xy[2 * i] = f->head.x + f->radius * 1.05 * cos(i * M_PI / 5);
        out[n].xy[2 * i + 1] = f->head.y + f->radius * 1.05 * sin(i * M_PI / 5);
    }
    out[n++].n = 10;
    poly_segment(&out[n++], f->neck, f->head, f->t_arm * 0.7);
    return n;
}

/* Rasterises polygons (clipped to the image) into an A8 mask without anti-aliasing. */
static void raster_polys(cairo_t *mc, const poly_t *p, int n, int w, int h)
{
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < p[i].n; j++) {
            double x = p[i].xy[2 * j], y = p[i].xy[2 * j + 1];
            if (j == 0) cairo_move_to(mc, x, y);
            else cairo_line_to(mc, x, y);
        }
        cairo_close_path(mc);
        cairo_fill(mc); /* one fill per polygon: a union, whatever the windings */
    }
}

static void clear_mask(cairo_t *mc)
{
    cairo_save(mc);
    cairo_set_operator(mc, CAIRO_OPERATOR_CLEAR);
    cairo_paint(mc);
    cairo_restore(mc);
}

/* Area and bbox of the mask's set pixels; returns the area. */
static long mask_stats(cairo_surface_t *m, double bbox[4])
{
    cairo_surface_flush(m);
    int w = cairo_image_surface_get_width(m), h = cairo_image_surface_get_height(m), st = cairo_image_surface_get_stride(m);
    const unsigned char *d = cairo_image_surface_get_data(m);
    long area = 0;
    int x0 = w, y0 = h, x1 = -1, y1 = -1;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            if (d[(size_t)y * st + x]) {
                area++;
                if (x < x0) x0 = x;
                if (x > x1) x1 = x;
                if (y < y0) y0 = y;
                if (y > y1) y1 = y;
            }
    if (!area) { bbox[0] = bbox[1] = bbox[2] = bbox[3] = 0; return 0; }
    bbox[0] = x0; bbox[1] = y0; bbox[2] = x1 - x0 + 1; bbox[3] = y1 - y0 + 1;
    return area;
}

static cJSON *json_numbers(const double *v, int n)
{
    cJSON *a = cJSON_CreateArray();
    SYNTH_CHECK(a, "synth: out of memory building JSON");
    for (int i = 0; i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(v[i]));
    return a;
}

static cJSON *ann_base(int id, int image_id, int iscrowd, long area, const double bbox[4])
{
    cJSON *a = cJSON_CreateObject();
    SYNTH_CHECK(a, "synth: out of memory building JSON");
    cJSON_AddNumberToObject(a, "id", id);
    cJSON_AddNumberToObject(a, "image_id", image_id);
    cJSON_AddNumberToObject(a, "category_id", 1);
    cJSON_AddNumberToObject(a, "iscrowd", iscrowd);
    cJSON_AddNumberToObject(a, "area", (double)area);
    double b[4] = {round2(bbox[0]), round2(bbox[1]), round2(bbox[2]), round2(bbox[3])};
    cJSON_AddItemToObject(a, "bbox", json_numbers(b, 4));
    return a;
}

static cJSON *json_polys(const poly_t *p, int n, int w, int h)
{
    cJSON *seg = cJSON_CreateArray();
    for (int i = 0; i < n; i++) {
        double v[24];
        for (int j = 0; j < p[i].n; j++) {
            v[2 * j] = round2(fmin(fmax(p[i].xy[2 * j], 0), w));
            v[2 * j + 1] = round2(fmin(fmax(p[i].xy[2 * j + 1], 0), h));
        }
        cJSON_AddItemToArray(seg, json_numbers(v, 2 * p[i].n));
    }
    return seg;
}

/* A person: keypoints with visibility from the id image, polygons, area and bbox. */
static cJSON *person_ann(const figure_t *f, int with_kp, int label, const uint32_t *ids, int ids_stride, int w, int h,
                         cairo_t *mc, cairo_surface_t *ms, int id, int image_id, dataio_synth_stats *st)
{
    poly_t polys[MAX_POLYS];
    int np = figure_polys(f, polys);
    clear_mask(mc);
    raster_polys(mc, polys, np, w, h);
    double bbox[4];
    long area = mask_stats(ms, bbox);
    if (area == 0) return NULL; /* entirely outside the frame */
    double kp[3 * NKP] = {0};
    int nkp = 0;
    for (int k = 0; with_kp && k < NKP; k++) {
        double x = f->kp[k].x, y = f->kp[k].y;
        int face = k == NOSE || k == L_EYE || k == R_EYE;
        int xi = (int)floor(x + 0.5), yi = (int)floor(y + 0.5);
        /* inside means within the outermost pixel centres, [0, w-1] x [0, h-1] */
        if ((face && !f->face_labelled) || !(x >= 0 && y >= 0 && x <= w - 1 && y <= h - 1)) continue;
        uint32_t owner = ids[(size_t)yi * ids_stride + xi] & 0xffffff;
        int v = owner == (uint32_t)label ? 2 : 1;
        kp[3 * k] = round2(x);
        kp[3 * k + 1] = round2(y);
        kp[3 * k + 2] = v;
        nkp++;
        if (v == 2) st->keypoints_visible++;
        else st->keypoints_occluded++;
    }
    cJSON *a = ann_base(id, image_id, 0, area, bbox);
    cJSON_AddItemToObject(a, "segmentation", json_polys(polys, np, w, h));
    cJSON_AddItemToObject(a, "keypoints", json_numbers(kp, 3 * NKP));
    cJSON_AddNumberToObject(a, "num_keypoints", nkp);
    st->persons++;
    if (!nkp) st->persons_no_kp++;
    return a;
}

/* A crowd region: the union of its members' outlines as uncompressed
 * column-major RLE (the form COCO uses for iscrowd=1). */
static cJSON *crowd_ann(const scene_t *sc, cairo_t *mc, cairo_surface_t *ms, int id, int image_id)
{
    int w = sc->width, h = sc->height;
    clear_mask(mc);
    for (int i = 0; i < sc->ncrowd; i++) {
        poly_t polys[MAX_POLYS];
        int np = figure_polys(&sc->crowd[i], polys);
        raster_polys(mc, polys, np, w, h);
    }
    double bbox[4];
    long area = mask_stats(ms, bbox);
    if (!area) return NULL;
    const unsigned char *d = cairo_image_surface_get_data(ms);
    int st = cairo_image_surface_get_stride(ms);
    cJSON *counts = cJSON_CreateArray();
    long run = 0;
    int cur = 0;
    for (int x = 0; x < w; x++)
        for (int y = 0; y < h; y++) {
            int v = d[(size_t)y * st + x] != 0;
            if (v != cur) {
                cJSON_AddItemToArray(counts, cJSON_CreateNumber((double)run));
                run = 0;
                cur = v;
            }
            run++;
        }
    cJSON_AddItemToArray(counts, cJSON_CreateNumber((double)run));
    cJSON *a = ann_base(id, image_id, 1, area, bbox);
    cJSON *seg = cJSON_CreateObject();
    cJSON_AddItemToObject(seg, "counts", counts);
    double size[2] = {h, w};
    cJSON_AddItemToObject(seg, "size", json_numbers(size, 2));
    cJSON_AddItemToObject(a, "segmentation", seg);
    double zero[3 * NKP] = {0};
    cJSON_AddItemToObject(a, "keypoints", json_numbers(zero, 3 * NKP));
    cJSON_AddNumberToObject(a, "num_keypoints", 0);
    return a;
}

static cJSON *categories(void)
{
    cJSON *cats = cJSON_CreateArray(), *c = cJSON_CreateObject();
    cJSON_AddStringToObject(c, "supercategory", "person");
    cJSON_AddNumberToObject(c, "id", 1);
    cJSON_AddStringToObject(c, "name", "person");
    cJSON_AddItemToObject(c, "keypoints", cJSON_CreateStringArray(coco_kp_names, NKP));
    cJSON *sk = cJSON_CreateArray();
    for (int i = 0; i < 19; i++) cJSON_AddItemToArray(sk, cJSON_CreateIntArray(coco_skeleton[i], 2));
    cJSON_AddItemToObject(c, "skeleton", sk);
    cJSON_AddItemToArray(cats, c);
    return cats;
}

/* Renders image i, writes its JPEG and builds its COCO entries (annotation ids
 * left 0: they are numbered in image order afterwards). Thread-safe. */
static void render_one(const dataio_synth_opts *o, int i, cJSON **image_out, cJSON **anns_out, dataio_synth_stats *st)
{
    scene_t *sc = core_malloc(sizeof *sc);
    sample_scene(o->seed, i, sc);
    int w = sc->width, h = sc->height, image_id = i + 1;
    cairo_surface_t *img = cairo_image_surface_create(CAIRO_FORMAT_RGB24, w, h);
    cairo_surface_t *ids = cairo_image_surface_create(CAIRO_FORMAT_RGB24, w, h);
    cairo_surface_t *ms = cairo_image_surface_create(CAIRO_FORMAT_A8, w, h);
    SYNTH_CHECK(cairo_surface_status(img) == CAIRO_STATUS_SUCCESS && cairo_surface_status(ids) == CAIRO_STATUS_SUCCESS &&
                cairo_surface_status(ms) == CAIRO_STATUS_SUCCESS, "synth: cannot allocate a %dx%d image", w, h);
    cairo_t *cr = cairo_create(img), *lc = cairo_create(ids), *mc = cairo_create(ms);
    /* pixel centres at integer coordinates, as keypoint annotations use them */
    cairo_translate(cr, 0.5, 0.5);
    cairo_translate(lc, 0.5, 0.5);
    cairo_translate(mc, 0.5, 0.5);
    cairo_set_antialias(lc, CAIRO_ANTIALIAS_NONE);
    cairo_set_antialias(mc, CAIRO_ANTIALIAS_NONE);
    draw_scene(cr, sc, !o->no_people, 0);
    draw_scene(lc, sc, 1, 1);
    cairo_surface_flush(img);
    cairo_surface_flush(ids);
    add_noise(cairo_image_surface_get_data(img), cairo_image_surface_get_stride(img), w, h, sc->noise_key);
    cairo_surface_mark_dirty(img);

    char name[64], path[4200];
    snprintf(name, sizeof name, "%012d.jpg", image_id);
    snprintf(path, sizeof path, "%s/images/%s", o->out_dir, name);
    write_jpeg(path, img, 92);

    cJSON *im = cJSON_CreateObject();
    SYNTH_CHECK(im, "synth: out of memory building JSON");
    cJSON_AddNumberToObject(im, "id", image_id);
    cJSON_AddStringToObject(im, "file_name", name);
    cJSON_AddNumberToObject(im, "width", w);
    cJSON_AddNumberToObject(im, "height", h);
    *image_out = im;

    cJSON *anns = cJSON_CreateArray();
    SYNTH_CHECK(anns, "synth: out of memory building JSON");
    const uint32_t *idp = (const uint32_t *)cairo_image_surface_get_data(ids);
    int ids_stride = cairo_image_surface_get_stride(ids) / 4;
    for (int p = 0; p < sc->nmain; p++) {
        cJSON *a = person_ann(&sc->main[p], 1, LABEL_MAIN(p), idp, ids_stride, w, h, mc, ms, 0, image_id, st);
        if (a) cJSON_AddItemToArray(anns, a);
    }
    for (int p = 0; p < sc->ntiny; p++) {
        cJSON *a = person_ann(&sc->tiny[p], 0, -1, idp, ids_stride, w, h, mc, ms, 0, image_id, st);
        if (a) cJSON_AddItemToArray(anns, a);
    }
    if (sc->ncrowd) {
        cJSON *a = crowd_ann(sc, mc, ms, 0, image_id);
        if (a) { cJSON_AddItemToArray(anns, a); st->crowds++; }
    }
    *anns_out = anns;
    cairo_destroy(cr);
    cairo_destroy(lc);
    cairo_destroy(mc);
    cairo_surface_destroy(img);
    cairo_surface_destroy(ids);
    cairo_surface_destroy(ms);
    free(sc);
    st->images++;
}

void dataio_synth_write(const dataio_synth_opts *o, dataio_synth_stats *stats)
{
    CHECK(o->out_dir && *o->out_dir, "synth: --out is required");
    CHECK(o->images >= 1, "synth: --images must be at least 1");
    make_dir(o->out_dir);
    char path[4096];
    snprintf(path, sizeof path, "%s/images", o->out_dir);
    make_dir(path);
    CHECK(access(path, W_OK) == 0, "synth: cannot write into '%s': %s", path, strerror(errno));

    int n = o->images;
    cJSON **im = core_calloc(n, sizeof *im), **an = core_calloc(n, sizeof *an);
    dataio_synth_stats *per = core_calloc(n, sizeof *per);
    /* Images are independent (each scene is keyed by its index), so any thread
     * count writes the same files; the JSON is assembled in image order below. */
#pragma omp parallel for schedule(dynamic, 1) num_threads(o->threads > 0 ? o->threads : omp_get_max_threads())
    for (int i = 0; i < n; i++) render_one(o, i, &im[i], &an[i], &per[i]);

    cJSON *root = cJSON_CreateObject(), *images = cJSON_CreateArray(), *anns = cJSON_CreateArray();
    CHECK(root && images && anns, "synth: out of memory building JSON");
    cJSON *info = cJSON_AddObjectToObject(root, "info");
    cJSON_AddStringToObject(info, "description", "sspose synthetic people (sspose synth)");
    cJSON_AddNumberToObject(info, "seed", (double)o->seed);
    cJSON_AddStringToObject(info, "version", "1");
    cJSON_AddItemToObject(root, "licenses", cJSON_CreateArray());
    cJSON_AddItemToObject(root, "images", images);
    cJSON_AddItemToObject(root, "annotations", anns);
    cJSON_AddItemToObject(root, "categories", categories());
    dataio_synth_stats st = {0};
    int ann_id = 1;
    for (int i = 0; i < n; i++) {
        cJSON_AddItemToArray(images, im[i]);
        while (cJSON_GetArraySize(an[i]) > 0) {
            cJSON *a = cJSON_DetachItemFromArray(an[i], 0);
            cJSON_SetNumberValue(cJSON_GetObjectItemCaseSensitive(a, "id"), ann_id++);
            cJSON_AddItemToArray(anns, a);
        }
        cJSON_Delete(an[i]);
        st.images += per[i].images;
        st.persons += per[i].persons;
        st.persons_no_kp += per[i].persons_no_kp;
        st.crowds += per[i].crowds;
        st.keypoints_visible += per[i].keypoints_visible;
        st.keypoints_occluded += per[i].keypoints_occluded;
    }
    free(im);
    free(an);
    free(per);

    char *text = cJSON_PrintUnformatted(root);
    CHECK(text, "synth: out of memory printing JSON");
    cJSON_Delete(root);
    char tmp[4200];
    snprintf(path, sizeof path, "%s/annotations.json", o->out_dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *fp = fopen(tmp, "wb");
    CHECK(fp, "synth: cannot write '%s': %s", tmp, strerror(errno));
    size_t len = strlen(text);
    CHECK(fwrite(text, 1, len, fp) == len && fputc('\n', fp) != EOF && fclose(fp) == 0,
          "synth: cannot write '%s' (disk full?)", tmp);
    free(text);
    CHECK(rename(tmp, path) == 0, "synth: cannot rename '%s' to '%s': %s", tmp, path, strerror(errno));
    if (stats) *stats = st;
}
