/* The loss (values per term and stage, total, and gradients into every network
 * output) against tests/torch_ref/loss_ref.py, SPEC section 4 in PyTorch, on
 * random in-memory batches of each feature set. The batch, our values and our
 * gradients go to an HDF5 file; the reference recomputes them with autograd. */
#include <hdf5.h>
#include <sys/wait.h>

#include "tests/test.h"
#include "tests/test_loss_util.h"

#include "core/h5util.h"
#include "loss/loss_h5.h"

static core_backend *be;

static void write_tensor(hid_t f, const char *path, const core_tensor *x)
{
    int64_t dims[4] = {x->n, x->c, x->h, x->w};
    core_h5_write_f32(f, path, 4, dims, x->data);
}

static void run_case(const char *name, const char **sets, int nsets, int n, int h, int w)
{
    core_config cfg;
    tl_config(&cfg, sets, nsets);
    tl_batch b;
    tl_batch_init(&b, &cfg, n, h, w);
    tl_fill_random(&b);
    loss_ctx *lc = loss_create(&cfg, be);
    loss_values v;
    tl_zero_grads(&b);
    loss_compute(lc, b.stages, b.io, &b.t, 1, &v);

    char path[512], p[96];
    snprintf(path, sizeof path, "%s/loss_%s.h5", t_tmpdir(), name);
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    H5_CHECK(f, "cannot create %s", path);
    char *text = core_config_text(&cfg);
    core_h5_attr_str(f, "config", text);
    free(text);
    write_tensor(f, "/targets/heat", &b.t.heat);
    write_tensor(f, "/targets/paf", &b.t.paf);
    write_tensor(f, "/targets/offset", &b.t.offset);
    write_tensor(f, "/targets/attention", &b.t.attention);
    write_tensor(f, "/targets/mask", &b.t.mask);
    for (int s = 0; s < b.stages; s++)
        for (int o = 0; o < MODEL_NUM_OUT; o++)
            if (b.io[s].out[o].data) {
                snprintf(p, sizeof p, "/outputs/stage%d/%s", s + 1, model_out_names[o]);
                write_tensor(f, p, &b.io[s].out[o]);
                snprintf(p, sizeof p, "/output_grads/stage%d/%s", s + 1, model_out_names[o]);
                write_tensor(f, p, &b.io[s].grad[o]);
            }
    loss_h5_write_values(f, &v);
    H5_CHECK(H5Fclose(f), "close %s", path);
    loss_destroy(lc);
    tl_batch_free(&b);

    char cmd[1024];
    const char *py = getenv("PYTHON") ? getenv("PYTHON") : "/usr/bin/python3";
    snprintf(cmd, sizeof cmd, "%s tests/torch_ref/loss_ref.py --check %s 2>&1", py, path);
    FILE *pipe = popen(cmd, "r");
    T_CHECK(pipe);
    if (!pipe) return;
    char line[512], first[512] = "";
    while (fgets(line, sizeof line, pipe))
        if (!first[0]) snprintf(first, sizeof first, "%.*s", (int)strcspn(line, "\n"), line);
    int rc = pclose(pipe);
    T_CHECKF(rc == 0, "torch reference disagrees (exit %d): %s", WEXITSTATUS(rc), first);
}

#define CASE(name, ...) do { const char *sets_[] = {__VA_ARGS__}; \
        run_case(name, sets_, (int)(sizeof sets_ / sizeof *sets_), 2, 5, 4); } while (0)

static void test_torch_paper_p2h(void) { CASE("p2h", "model.stages=3", "model.ss=p2h", "model.offsets=1"); }
static void test_torch_kl_detach(void)
{
    CASE("detach", "model.stages=2", "model.ss=p2h", "model.offsets=1", "loss.kl_detach=1", "loss.beta=0.2,0.9");
}
static void test_torch_h2p(void) { CASE("h2p", "model.stages=2", "model.ss=h2p", "model.offsets=0", "loss.beta=linear"); }
static void test_torch_both(void)
{
    CASE("both", "model.stages=4", "model.ss=both", "model.offsets=1", "loss.gamma=3", "loss.alpha=2.5",
         "loss.offset_weight=0.7", "loss.pdd_threshold=0.3", "loss.beta=quadratic_a", "loss.kl_eps=1e-4");
}
static void test_torch_baseline(void)
{
    CASE("baseline", "model.stages=2", "loss.gamma=1", "loss.delta=1", "loss.alpha=0", "loss.beta=uniform",
         "model.offsets=0", "model.ss=off");
}

int main(void)
{
    core_set_quiet(1);
    be = core_cpu_backend_create(2);
    T_RUN(test_torch_paper_p2h);
    T_RUN(test_torch_kl_detach);
    T_RUN(test_torch_h2p);
    T_RUN(test_torch_both);
    T_RUN(test_torch_baseline);
    core_backend_destroy(be);
    T_EXIT();
}
