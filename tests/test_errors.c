/* test_errors.c: shape errors name the op and both shapes; the default
 * handler prints one line and exits with status 2. */
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

typedef struct {
    Tape t;
    int which;
} Ctx;

static void bad_op(void *p) {
    Ctx *c = p;
    Tape *t = &c->t;
    Tensor *a = tensor_zeros(t, 2, (int[]){3, 4});
    Tensor *b = tensor_zeros(t, 2, (int[]){5, 6});
    Tensor *w = tensor_zeros(t, 2, (int[]){6, 5});
    switch (c->which) {
    case 0: op_matmul(t, a, b); break;
    case 1: op_add(t, a, b); break;
    case 2: op_linear(t, a, w, NULL); break;
    case 3: op_mul(t, a, tensor_zeros(t, 1, (int[]){3})); break;
    case 4: op_reshape(t, a, 2, (int[]){5, 3}); break;
    case 5: op_layernorm(t, a, tensor_zeros(t, 1, (int[]){3}), tensor_zeros(t, 1, (int[]){3}), 1e-5f); break;
    case 6: op_attention(t, tensor_zeros(t, 3, (int[]){1, 2, 12}), 3, 3); break;
    case 7: op_matmul(t, tensor_zeros(t, 3, (int[]){2, 3, 4}), tensor_zeros(t, 3, (int[]){3, 4, 5})); break;
    }
}

static void expect(int which, const char *a, const char *b, const char *c) {
    Ctx ctx = {.which = which};
    tape_init(&ctx.t, 4096);
    char msg[512];
    cr_assert(capture_failure(bad_op, &ctx, msg, sizeof msg), "case %d did not fail", which);
    cr_assert(strstr(msg, a), "'%s' missing from: %s", a, msg);
    if (b) cr_assert(strstr(msg, b), "'%s' missing from: %s", b, msg);
    if (c) cr_assert(strstr(msg, c), "'%s' missing from: %s", c, msg);
    cr_assert(!strchr(msg, '\n'), "message is not one line: %s", msg);
    tape_free(&ctx.t);
}

Test(errors, matmul_names_both_shapes) { expect(0, "matmul", "[3,4]", "[5,6]"); }
Test(errors, add_names_both_shapes) { expect(1, "add", "[3,4]", "[5,6]"); }
Test(errors, linear_names_both_shapes) { expect(2, "linear", "[3,4]", "[6,5]"); }
Test(errors, mul_names_both_shapes) { expect(3, "mul", "[3,4]", "[3]"); }
Test(errors, reshape_names_shapes) { expect(4, "reshape", "[3,4]", "[5,3]"); }
Test(errors, layernorm_names_shapes) { expect(5, "layernorm", "[3,4]", "[3]"); }
Test(errors, attention_head_split) { expect(6, "attention", "n_head 3", NULL); }
Test(errors, matmul_batch_mismatch) { expect(7, "matmul", "[2,3,4]", "[3,4,5]"); }

static void redirect_stderr(void) { cr_redirect_stderr(); }

/* Without a test handler, bad input ends the process with status 2 and one line. */
Test(errors, default_handler_exits_2, .exit_code = 2, .init = redirect_stderr) {
    Ctx ctx = {.which = 0};
    tape_init(&ctx.t, 4096);
    bad_op(&ctx);
}

/* The same in a child process: stderr holds exactly one line naming the op. */
Test(errors, default_handler_prints_one_line) {
    int fd[2];
    cr_assert_eq(pipe(fd), 0);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fd[1], 2);
        close(fd[0]);
        Ctx ctx = {.which = 1};
        tape_init(&ctx.t, 4096);
        bad_op(&ctx);
        _exit(0); /* not reached */
    }
    close(fd[1]);
    char buf[1024] = {0};
    ssize_t n = 0, k;
    while ((k = read(fd[0], buf + n, sizeof buf - 1 - (size_t)n)) > 0) n += k;
    close(fd[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 2, "exit status %d", WEXITSTATUS(status));
    cr_assert(strncmp(buf, "qat: add: shape mismatch: a [3,4] and b [5,6]", 45) == 0, "stderr: %s", buf);
    /* sanitizer builds may append their own report lines; qat's part is one line */
    char *second = strchr(buf, '\n');
    cr_assert(second != NULL && strncmp(second + 1, "qat:", 4) != 0, "more than one qat line: %s", buf);
}
