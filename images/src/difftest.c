/* Differential test of the island kernel against Linux: a fixed, deterministic sequence of file,
 * memory and futex calls with good and bad arguments, made through raw syscall(), each printed on
 * one line with its result ("= N" or "= -1 ENAME") and, where it matters, what it produced.
 *
 * The test runs it natively in a read-only root (images/out bind-mounted read-only, chrooted,
 * as the working directory) and on an island with --rootfs images/out, and compares the output
 * line by line. So nothing here may depend on where memory is mapped, on pids, times or the
 * umask: addresses are printed as "ok" or as an offset from what the program chose, and only
 * stable fields of a stat are shown. Paths under /dev and /proc are left out (the native root has
 * none). Stdout must be a pipe, as in the test (a write from a partly mapped buffer answers as a
 * pipe does). Usage: difftest [SECTION...] (all sections by default). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

/* linux/futex.h (musl's headers do not carry the kernel's). */
#define FUTEX_WAIT 0
#define FUTEX_WAKE 1
#define FUTEX_REQUEUE 3
#define FUTEX_CMP_REQUEUE 4
#define FUTEX_WAKE_OP 5
#define FUTEX_WAIT_BITSET 9
#define FUTEX_WAKE_BITSET 10
#define FUTEX_PRIVATE_FLAG 128
#define FUTEX_CLOCK_REALTIME 256
#define FUTEX_OP_SET 0
#define FUTEX_OP_ADD 1
#define FUTEX_OP_OR 2
#define FUTEX_OP_ANDN 3
#define FUTEX_OP_XOR 4
#define FUTEX_OP_OPARG_SHIFT 8
#define FUTEX_OP_CMP_EQ 0
#define FUTEX_OP_CMP_LT 2
#define FUTEX_OP(op, oparg, cmp, cmparg) \
    ((((op) & 0xf) << 28) | (((cmp) & 0xf) << 24) | (((oparg) & 0xfff) << 12) | ((cmparg) & 0xfff))

#ifndef SYS_fchmodat2
#define SYS_fchmodat2 452
#endif
#ifndef SYS_faccessat2
#define SYS_faccessat2 439
#endif
#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE 1
#define RENAME_EXCHANGE 2
#define RENAME_WHITEOUT 4
#endif
#ifndef MADV_FREE
#define MADV_FREE 8
#endif
#ifndef MADV_WIPEONFORK
#define MADV_WIPEONFORK 18
#endif
#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#define MADV_POPULATE_WRITE 23
#endif
#ifndef STATX_BASIC_STATS
#define STATX_BASIC_STATS 0x7ff
#endif
#ifndef AT_STATX_SYNC_TYPE
#define AT_STATX_SYNC_TYPE 0x6000
#endif
#ifndef O_PATH
#define O_PATH 010000000
#endif
#ifndef O_TMPFILE
#define O_TMPFILE (020000000 | O_DIRECTORY)
#endif

static const char *errname(int e) {
    switch (e) {
#define E(x) case x: return #x;
    E(EPERM) E(ENOENT) E(ESRCH) E(EINTR) E(EIO) E(ENXIO) E(E2BIG) E(ENOEXEC) E(EBADF) E(ECHILD)
    E(EAGAIN) E(ENOMEM) E(EACCES) E(EFAULT) E(EBUSY) E(EEXIST) E(EXDEV) E(ENODEV) E(ENOTDIR)
    E(EISDIR) E(EINVAL) E(ENFILE) E(EMFILE) E(ENOTTY) E(EFBIG) E(ENOSPC) E(ESPIPE) E(EROFS)
    E(EMLINK) E(EPIPE) E(ERANGE) E(EDEADLK) E(ENAMETOOLONG) E(ENOSYS) E(ENOTEMPTY) E(ELOOP)
    E(EOVERFLOW) E(EOPNOTSUPP) E(ETIMEDOUT) E(ENOTSOCK)
#undef E
    }
    return "E?";
}

static char line[160];

/* One call: what it was, and its result. */
static long show(const char *what, long r) {
    if (r < 0)
        printf("%-58s = -1 %s\n", what, errname(errno));
    else
        printf("%-58s = %ld\n", what, r);
    fflush(stdout);
    return r;
}

/* A call that returns an address: "ok" (or where it is relative to `want`) or the error. */
static long show_addr(const char *what, long r, long want) {
    if (r == -1 || (r < 0 && r > -4096))
        printf("%-58s = -1 %s\n", what, errname(errno));
    else if (want && r == want)
        printf("%-58s = the address asked for\n", what);
    else if (want)
        printf("%-58s = elsewhere\n", what);
    else
        printf("%-58s = ok\n", what);
    fflush(stdout);
    return r;
}

static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void note(const char *fmt, ...) {
    __builtin_va_list ap;
    __builtin_va_start(ap, fmt);
    printf("    ");
    vprintf(fmt, ap);
    printf("\n");
    __builtin_va_end(ap);
    fflush(stdout);
}

#define S(...) (errno = 0, syscall(__VA_ARGS__))
#define T(what, ...) show(what, S(__VA_ARGS__))
#define F(...) (snprintf(line, sizeof line, __VA_ARGS__), line)

/* Prints up to n bytes of a buffer with newlines as '|'. */
static void bytes(const char *what, const char *p, long n) {
    char out[96];
    long k = n < 0 ? 0 : n > 80 ? 80 : n;
    for (long i = 0; i < k; i++)
        out[i] = p[i] == '\n' ? '|' : (p[i] >= 32 && p[i] < 127) ? p[i] : '.';
    out[k] = 0;
    note("%s: \"%s\"", what, out);
}

/* open + read of a path (from `dirfd`), showing both. */
static void cat(const char *what, int dirfd, const char *path, int flags) {
    char buf[64];
    int fd = (int)show(what, S(SYS_openat, dirfd, path, flags));
    if (fd < 0)
        return;
    long n = S(SYS_read, fd, buf, sizeof buf);
    if (n >= 0)
        bytes("read", buf, n);
    else
        note("read: -1 %s", errname(errno));
    close(fd);
}

static void stat_line(const char *what, long r, struct stat *st) {
    show(what, r);
    if (r == 0)
        note("mode %06o size %lld nlink %ld", st->st_mode, (long long)st->st_size,
             (long)st->st_nlink);
}

static char *page_pair; /* two pages, the second unmapped */
static int poem;        /* data/poem.txt, open for the section that needs a file to read */
static char *unmapped;  /* a page that is not mapped */
#define BAD ((void *)0x1000)
#define KERNEL ((void *)0xffffffff81000000ul)
#define NONCANON ((void *)0x8000000000000000ul)

static void section_paths(void) {
    printf("## paths and open\n");
    cat("open(data/poem.txt)", AT_FDCWD, "data/poem.txt", O_RDONLY);
    cat("open(data/tree/a/../x) (.. after a symlink)", AT_FDCWD, "data/tree/a/../x", O_RDONLY);
    cat("open(/data/tree/abs/x) (absolute symlink)", AT_FDCWD, "/data/tree/abs/x", O_RDONLY);
    cat("open(data/tree/abs/../x)", AT_FDCWD, "data/tree/abs/../x", O_RDONLY);
    cat("open(data/tree/up/data/poem.txt) (up -> ../..)", AT_FDCWD,
        "data/tree/up/data/poem.txt", O_RDONLY);
    cat("open(data/tree/up/../../../data/tree/x)", AT_FDCWD, "data/tree/up/../../../data/tree/x",
        O_RDONLY);
    cat("open(data/tree/loop)", AT_FDCWD, "data/tree/loop", O_RDONLY);
    cat("open(data/tree/dangling)", AT_FDCWD, "data/tree/dangling", O_RDONLY);
    cat("open(data/tree/lx)", AT_FDCWD, "data/tree/lx", O_RDONLY);
    cat("open(data/tree/lx, O_NOFOLLOW)", AT_FDCWD, "data/tree/lx", O_RDONLY | O_NOFOLLOW);
    cat("open(data/tree/a/y, O_NOFOLLOW) (link not last)", AT_FDCWD, "data/tree/a/y",
        O_RDONLY | O_NOFOLLOW);
    cat("open(data/poem.txt/)", AT_FDCWD, "data/poem.txt/", O_RDONLY);
    cat("open(data/poem.txt/.)", AT_FDCWD, "data/poem.txt/.", O_RDONLY);
    cat("open(data/tree/lx/)", AT_FDCWD, "data/tree/lx/", O_RDONLY);
    cat("open(/../../data/poem.txt)", AT_FDCWD, "/../../data/poem.txt", O_RDONLY);
    cat("open(data/../../../data/./poem.txt)", AT_FDCWD, "data/../../../data/./poem.txt",
        O_RDONLY);
    cat("open(//data//tree///x)", AT_FDCWD, "//data//tree///x", O_RDONLY);
    T("open(\"\")", SYS_open, "", O_RDONLY);
    T("open(NULL)", SYS_open, NULL, O_RDONLY);
    T("open(0x1000)", SYS_open, BAD, O_RDONLY);
    T("open(kernel address)", SYS_open, KERNEL, O_RDONLY);
    static char longpath[5000];
    memset(longpath, 'a', 4096);
    longpath[4096] = 0;
    T("open(4096 bytes)", SYS_open, longpath, O_RDONLY);
    longpath[4095] = 0;
    T("open(4095 bytes)", SYS_open, longpath, O_RDONLY);
    memset(longpath, 0, sizeof longpath);
    memcpy(longpath, "data/", 5);
    memset(longpath + 5, 'b', 256);
    T("open(data/<256 bytes>)", SYS_open, longpath, O_RDONLY);
    longpath[5 + 255] = 0;
    T("open(data/<255 bytes>)", SYS_open, longpath, O_RDONLY);
    /* A path that ends exactly where its mapping does, unterminated, then terminated. */
    memset(page_pair, 'c', 4096);
    T("open(unterminated at the end of a mapping)", SYS_open, page_pair + 4090, O_RDONLY);
    memcpy(page_pair + 4090, "data/\0", 6);
    T("open(\"data/\" ending at the end of a mapping)", SYS_open, page_pair + 4090, O_RDONLY);

    printf("## open flags\n");
    T("open(data, O_DIRECTORY)", SYS_open, "data", O_RDONLY | O_DIRECTORY);
    T("open(data/poem.txt, O_DIRECTORY)", SYS_open, "data/poem.txt", O_RDONLY | O_DIRECTORY);
    T("open(data, O_WRONLY)", SYS_open, "data", O_WRONLY);
    T("open(data, O_RDWR)", SYS_open, "data", O_RDWR);
    T("open(data, O_RDONLY|O_TRUNC)", SYS_open, "data", O_RDONLY | O_TRUNC);
    T("open(data/poem.txt, O_WRONLY)", SYS_open, "data/poem.txt", O_WRONLY);
    T("open(data/poem.txt, O_RDWR)", SYS_open, "data/poem.txt", O_RDWR);
    T("open(data/poem.txt, O_RDONLY|O_TRUNC)", SYS_open, "data/poem.txt", O_RDONLY | O_TRUNC);
    T("open(data/poem.txt, O_WRONLY|O_APPEND)", SYS_open, "data/poem.txt", O_WRONLY | O_APPEND);
    T("open(data/missing, O_WRONLY)", SYS_open, "data/missing", O_WRONLY);
    T("open(data/new, O_CREAT|O_WRONLY)", SYS_open, "data/new", O_CREAT | O_WRONLY, 0644);
    T("open(data/new, O_CREAT|O_RDONLY)", SYS_open, "data/new", O_CREAT | O_RDONLY, 0644);
    T("open(data/poem.txt, O_CREAT|O_EXCL)", SYS_open, "data/poem.txt", O_CREAT | O_EXCL, 0644);
    cat("open(data/poem.txt, O_CREAT|O_RDONLY) (exists)", AT_FDCWD, "data/poem.txt",
        O_CREAT | O_RDONLY);
    T("open(data, O_CREAT|O_RDONLY)", SYS_open, "data", O_CREAT | O_RDONLY, 0644);
    T("open(nope/new, O_CREAT|O_WRONLY)", SYS_open, "nope/new", O_CREAT | O_WRONLY, 0644);
    T("open(data/new/, O_CREAT|O_WRONLY)", SYS_open, "data/new/", O_CREAT | O_WRONLY, 0644);
    T("open(data/poem.txt/new, O_CREAT)", SYS_open, "data/poem.txt/new", O_CREAT | O_WRONLY,
      0644);
    T("open(data/tree/dangling, O_CREAT|O_WRONLY)", SYS_open, "data/tree/dangling",
      O_CREAT | O_WRONLY, 0644);
    T("open(data/tree/dangling, O_CREAT|O_EXCL)", SYS_open, "data/tree/dangling",
      O_CREAT | O_EXCL | O_WRONLY, 0644);
    T("open(data/tree/lx, O_WRONLY|O_NOFOLLOW)", SYS_open, "data/tree/lx", O_WRONLY | O_NOFOLLOW);
    T("open(data, O_CREAT|O_DIRECTORY)", SYS_open, "data", O_CREAT | O_DIRECTORY, 0644);
    T("open(data, O_TMPFILE|O_RDWR)", SYS_open, "data", O_TMPFILE | O_RDWR, 0644);
    T("open(data, O_TMPFILE|O_RDONLY)", SYS_open, "data", O_TMPFILE | O_RDONLY, 0644);
    T("open(data/poem.txt, O_TMPFILE|O_RDWR)", SYS_open, "data/poem.txt", O_TMPFILE | O_RDWR,
      0644);
    T("open(/, O_WRONLY)", SYS_open, "/", O_WRONLY);
    long fd = T("open(data/poem.txt, O_PATH|O_WRONLY)", SYS_open, "data/poem.txt",
                O_PATH | O_WRONLY);
    char buf[64];
    T("  read(that O_PATH fd)", SYS_read, fd, buf, 10);
    T("  fcntl(that fd, F_GETFL)", SYS_fcntl, fd, F_GETFL);
    close((int)fd);
    fd = T("open(data/poem.txt)", SYS_open, "data/poem.txt", O_RDONLY);
    show("  fcntl(F_GETFL)", S(SYS_fcntl, fd, F_GETFL));
    close((int)fd);
    fd = T("open(data/poem.txt, O_NONBLOCK|O_CLOEXEC)", SYS_open, "data/poem.txt",
           O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    show("  fcntl(F_GETFL)", S(SYS_fcntl, fd, F_GETFL));
    show("  fcntl(F_GETFD)", S(SYS_fcntl, fd, F_GETFD));
    close((int)fd);

    printf("## dirfds\n");
    int file = (int)T("open(data/poem.txt)", SYS_open, "data/poem.txt", O_RDONLY);
    T("openat(file, x)", SYS_openat, file, "x", O_RDONLY);
    T("openat(file, .)", SYS_openat, file, ".", O_RDONLY);
    T("openat(file, \"\")", SYS_openat, file, "", O_RDONLY);
    fd = T("openat(file, /data/poem.txt)", SYS_openat, file, "/data/poem.txt", O_RDONLY);
    close((int)fd);
    T("openat(999, x)", SYS_openat, 999, "x", O_RDONLY);
    fd = T("openat(999, /data/poem.txt)", SYS_openat, 999, "/data/poem.txt", O_RDONLY);
    close((int)fd);
    T("openat(-1, x)", SYS_openat, -1, "x", O_RDONLY);
    T("openat(0 (stdin), x)", SYS_openat, 0, "x", O_RDONLY);
    T("openat(1 (stdout), .)", SYS_openat, 1, ".", O_RDONLY);
    int a = (int)T("open(data/tree/a, O_DIRECTORY)", SYS_open, "data/tree/a",
                   O_RDONLY | O_DIRECTORY);
    cat("openat(a, y)", a, "y", O_RDONLY);
    cat("openat(a, ../x)", a, "../x", O_RDONLY);
    cat("openat(a, ../../x)", a, "../../x", O_RDONLY);
    cat("openat(a, ../../../poem.txt)", a, "../../../poem.txt", O_RDONLY);
    cat("openat(a, ../../../../../../data/tree/x)", a, "../../../../../../data/tree/x", O_RDONLY);
    cat("openat(a, ../../abs/x)", a, "../../abs/x", O_RDONLY);
    cat("openat(a, ../../up/data/other.txt)", a, "../../up/data/other.txt", O_RDONLY);
    int dp = (int)T("open(data, O_PATH)", SYS_open, "data", O_PATH);
    cat("openat(data O_PATH, poem.txt)", dp, "poem.txt", O_RDONLY);
    cat("openat(data O_PATH, tree/a/../x)", dp, "tree/a/../x", O_RDONLY);
    T("getdents64(data O_PATH)", SYS_getdents64, dp, buf, sizeof buf);
    close(dp);
    close(a);
    close(file);
}

static int cmpstr(const void *x, const void *y) {
    return strcmp(*(char *const *)x, *(char *const *)y);
}

static void list_dir(const char *what, const char *path) {
    int fd = (int)S(SYS_open, path, O_RDONLY | O_DIRECTORY);
    static char d[8192];
    long n = show(what, fd < 0 ? fd : S(SYS_getdents64, fd, d, sizeof d));
    if (n > 0) {
        char *names[64];
        int k = 0;
        for (long at = 0; at < n && k < 64;) {
            unsigned short reclen = *(unsigned short *)(d + at + 16);
            names[k++] = d + at + 19;
            at += reclen;
        }
        qsort(names, k, sizeof *names, cmpstr);
        char all[512] = {0};
        for (int i = 0; i < k; i++) {
            strncat(all, names[i], sizeof all - strlen(all) - 2);
            strncat(all, " ", sizeof all - strlen(all) - 1);
        }
        note("%s", all);
        note("then: %ld", S(SYS_getdents64, fd, d, sizeof d));
    }
    if (fd >= 0)
        close(fd);
}

static void section_io(void) {
    printf("## read, write\n");
    char buf[256];
    int fd = (int)T("open(data/poem.txt)", SYS_open, "data/poem.txt", O_RDONLY);
    long n = T("read(10)", SYS_read, fd, buf, 10);
    bytes("got", buf, n);
    T("read(NULL, 10)", SYS_read, fd, NULL, 10);
    T("read(buf, 0)", SYS_read, fd, buf, 0);
    T("read(NULL, 0)", SYS_read, fd, NULL, 0);
    T("read(buf, -1)", SYS_read, fd, buf, -1L);
    T("read(buf, 1<<47)", SYS_read, fd, buf, 1L << 47);
    T("read(kernel address, 10)", SYS_read, fd, KERNEL, 10);
    T("read(non-canonical, 10)", SYS_read, fd, NONCANON, 10);
    T("read(read-only string, 10)", SYS_read, fd, "read only", 10);
    n = T("read(10 into the last 4 bytes of a mapping)", SYS_read, fd, page_pair + 4092, 10);
    bytes("got", page_pair + 4092, n);
    T("  lseek(0, SEEK_CUR)", SYS_lseek, fd, 0L, SEEK_CUR);
    T("read(into the unmapped page)", SYS_read, fd, page_pair + 4096, 10);
    T("lseek(0, SEEK_END)", SYS_lseek, fd, 0L, SEEK_END);
    T("read(NULL, 10) at the end", SYS_read, fd, NULL, 10);
    T("read(buf, 10) at the end", SYS_read, fd, buf, 10);
    T("lseek(-1, SEEK_SET)", SYS_lseek, fd, -1L, SEEK_SET);
    T("lseek(0, 99)", SYS_lseek, fd, 0L, 99);
    T("lseek(1000, SEEK_SET) (past the end)", SYS_lseek, fd, 1000L, SEEK_SET);
    T("read at 1000", SYS_read, fd, buf, 10);
    T("lseek(-2000, SEEK_CUR)", SYS_lseek, fd, -2000L, SEEK_CUR);
    n = T("pread(10, at 5)", SYS_pread64, fd, buf, 10L, 5L);
    bytes("got", buf, n);
    T("pread(10, at -1)", SYS_pread64, fd, buf, 10L, -1L);
    T("pread(10, at 1<<62)", SYS_pread64, fd, buf, 10L, 1L << 62);
    T("pread(NULL, 10, at -1)", SYS_pread64, fd, NULL, 10L, -1L);
    T("pread(999, NULL, 10, at -1)", SYS_pread64, 999, NULL, 10L, -1L);
    T("pread(0 (stdin), 10, at 0)", SYS_pread64, 0, buf, 10L, 0L);
    T("pread(1 (stdout pipe), 10, at 0)", SYS_pread64, 1, buf, 10L, 0L);
    T("read(999)", SYS_read, 999, buf, 10);
    T("read(-1)", SYS_read, -1, buf, 10);
    T("read(1 (stdout, write-only pipe end))", SYS_read, 1, buf, 10);
    int dir = (int)S(SYS_open, "data", O_RDONLY | O_DIRECTORY);
    T("read(directory)", SYS_read, dir, buf, 10);
    T("read(directory, NULL, 10)", SYS_read, dir, NULL, 10);
    T("lseek(directory, 0, SEEK_SET)", SYS_lseek, dir, 0L, SEEK_SET);
    close(dir);
    T("read(0 (stdin, empty))", SYS_read, 0, buf, 10);
    T("write(poem.txt fd, 3)", SYS_write, fd, "abc", 3);
    T("write(poem.txt fd, NULL, 3)", SYS_write, fd, NULL, 3);
    T("pwrite(poem.txt fd, 3, at 0)", SYS_pwrite64, fd, "abc", 3L, 0L);
    T("write(1, NULL, 0)", SYS_write, 1, NULL, 0);
    T("write(1, NULL, 5)", SYS_write, 1, NULL, 5);
    T("write(1, buf, -1)", SYS_write, 1, "x", -1L);
    T("write(1, kernel address, 5)", SYS_write, 1, KERNEL, 5);
    T("write(1, 10 bytes with 4 mapped)", SYS_write, 1, page_pair + 4092, 10);
    T("write(1, \"hello\\n\", 6)", SYS_write, 1, "hello\n", 6);
    T("pwrite(1 (pipe), 1, at 0)", SYS_pwrite64, 1, "x", 1L, 0L);
    T("pwrite(1, 1, at -1)", SYS_pwrite64, 1, "x", 1L, -1L);
    T("write(999)", SYS_write, 999, "x", 1);
    T("write(0 (stdin, read-only))", SYS_write, 0, "x", 1);

    printf("## readv, writev\n");
    lseek(fd, 0, SEEK_SET);
    char a1[5], a2[7], a3[9];
    struct iovec iov[4] = {{a1, 5}, {a2, 7}, {NULL, 0}, {a3, 9}};
    n = T("readv([5, 7, 0 (NULL), 9])", SYS_readv, fd, iov, 4);
    bytes("1", a1, 5);
    bytes("2", a2, 7);
    bytes("3", a3, 9);
    T("readv(cnt 0)", SYS_readv, fd, iov, 0);
    T("readv(cnt 1025)", SYS_readv, fd, iov, 1025);
    T("readv(cnt -1)", SYS_readv, fd, iov, -1);
    T("readv(iov NULL, cnt 1)", SYS_readv, fd, NULL, 1);
    struct iovec neg[1] = {{a1, (size_t)-1}};
    T("readv(len -1)", SYS_readv, fd, neg, 1);
    struct iovec bad[2] = {{a1, 5}, {KERNEL, 5}};
    T("readv([5, kernel address])", SYS_readv, fd, bad, 2);
    struct iovec cut[2] = {{a1, 5}, {page_pair + 4094, 10}};
    lseek(fd, 0, SEEK_SET);
    T("readv([5, 10 with 2 mapped])", SYS_readv, fd, cut, 2);
    T("  lseek(0, SEEK_CUR)", SYS_lseek, fd, 0L, SEEK_CUR);
    struct iovec unm[2] = {{page_pair + 4096, 5}, {a1, 5}};
    T("readv([unmapped 5, 5])", SYS_readv, fd, unm, 2);
    T("preadv?(readv on 999)", SYS_readv, 999, iov, 1);
    struct iovec w[3] = {{"ab", 2}, {NULL, 0}, {"cd\n", 3}};
    T("writev(1, [ab, NULL 0, cd\\n])", SYS_writev, 1, w, 3);
    T("writev(1, cnt 0)", SYS_writev, 1, w, 0);
    T("writev(1, NULL, 1)", SYS_writev, 1, NULL, 1);
    T("writev(1, cnt 1025)", SYS_writev, 1, w, 1025);
    struct iovec wbad[2] = {{"ab", 2}, {page_pair + 4096, 4}};
    T("writev(1, [ab, unmapped])", SYS_writev, 1, wbad, 2);
    struct iovec wk[2] = {{"ab", 2}, {KERNEL, 4}};
    T("writev(1, [ab, kernel address])", SYS_writev, 1, wk, 2);
    T("writev(poem.txt fd)", SYS_writev, fd, w, 3);
    close(fd);

    printf("## directories\n");
    list_dir("getdents64(data)", "data");
    list_dir("getdents64(data/tree)", "data/tree");
    list_dir("getdents64(data/tree/a)", "data/tree/a");
    fd = (int)S(SYS_open, "data", O_RDONLY | O_DIRECTORY);
    T("getdents64(data, 1 byte)", SYS_getdents64, fd, buf, 1);
    T("getdents64(data, count 0)", SYS_getdents64, fd, buf, 0);
    T("getdents64(data, NULL)", SYS_getdents64, fd, NULL, 100);
    T("getdents64(data, kernel address)", SYS_getdents64, fd, KERNEL, 100);
    close(fd);
    fd = (int)S(SYS_open, "data/poem.txt", O_RDONLY);
    T("getdents64(poem.txt)", SYS_getdents64, fd, buf, sizeof buf);
    close(fd);
    T("getdents64(999)", SYS_getdents64, 999, buf, sizeof buf);
}

static void section_names(void) {
    printf("## stat, access, readlink\n");
    struct stat st;
    stat_line("stat(data/poem.txt)", S(SYS_stat, "data/poem.txt", &st), &st);
    stat_line("stat(data/tree/lx)", S(SYS_stat, "data/tree/lx", &st), &st);
    stat_line("lstat(data/tree/lx)", S(SYS_lstat, "data/tree/lx", &st), &st);
    stat_line("lstat(data/tree/lx/)", S(SYS_lstat, "data/tree/lx/", &st), &st);
    stat_line("lstat(data/tree/a/)", S(SYS_lstat, "data/tree/a/", &st), &st);
    stat_line("stat(data/tree/loop)", S(SYS_stat, "data/tree/loop", &st), &st);
    stat_line("lstat(data/tree/loop)", S(SYS_lstat, "data/tree/loop", &st), &st);
    stat_line("stat(data/tree/dangling)", S(SYS_stat, "data/tree/dangling", &st), &st);
    stat_line("stat(\"\")", S(SYS_stat, "", &st), &st);
    stat_line("stat(data/tree/a/..)", S(SYS_stat, "data/tree/a/..", &st), &st);
    stat_line("stat(/..)", S(SYS_stat, "/..", &st), &st);
    T("stat(data/poem.txt, NULL)", SYS_stat, "data/poem.txt", NULL);
    T("stat(data/poem.txt, read-only buffer)", SYS_stat, "data/poem.txt", "read only");
    int fd = (int)S(SYS_open, "data/poem.txt", O_RDONLY);
    stat_line("newfstatat(fd, \"\", AT_EMPTY_PATH)",
              S(SYS_newfstatat, fd, "", &st, AT_EMPTY_PATH), &st);
    stat_line("newfstatat(AT_FDCWD, \"\", AT_EMPTY_PATH)",
              S(SYS_newfstatat, AT_FDCWD, "", &st, AT_EMPTY_PATH), &st);
    stat_line("newfstatat(fd, \"\", 0)", S(SYS_newfstatat, fd, "", &st, 0), &st);
    stat_line("newfstatat(999, \"\", AT_EMPTY_PATH)",
              S(SYS_newfstatat, 999, "", &st, AT_EMPTY_PATH), &st);
    stat_line("newfstatat(flags 0x1)", S(SYS_newfstatat, AT_FDCWD, "data", &st, 0x1), &st);
    stat_line("newfstatat(fd, x)", S(SYS_newfstatat, fd, "x", &st, 0), &st);
    stat_line("fstat(fd)", S(SYS_fstat, fd, &st), &st);
    T("fstat(999)", SYS_fstat, 999, &st);
    T("fstat(fd, NULL)", SYS_fstat, fd, NULL);
    static char sx[256];
    long r = T("statx(data/poem.txt)", SYS_statx, AT_FDCWD, "data/poem.txt", 0,
               STATX_BASIC_STATS, sx);
    if (r == 0)
        note("size %llu mode %06o", (unsigned long long)*(uint64_t *)(sx + 40),
             *(uint16_t *)(sx + 28));
    T("statx(flags 0x1)", SYS_statx, AT_FDCWD, "data", 0x1, STATX_BASIC_STATS, sx);
    T("statx(AT_STATX_SYNC_TYPE both)", SYS_statx, AT_FDCWD, "data", AT_STATX_SYNC_TYPE,
      STATX_BASIC_STATS, sx);
    T("statx(mask 0x80000000)", SYS_statx, AT_FDCWD, "data", 0, 0x80000000u, sx);
    T("statx(fd, \"\", AT_EMPTY_PATH)", SYS_statx, fd, "", AT_EMPTY_PATH, STATX_BASIC_STATS, sx);
    T("statx(data, NULL buffer)", SYS_statx, AT_FDCWD, "data", 0, STATX_BASIC_STATS, NULL);

    T("access(data/poem.txt, R_OK)", SYS_access, "data/poem.txt", R_OK);
    T("access(data/poem.txt, W_OK)", SYS_access, "data/poem.txt", W_OK);
    T("access(data/poem.txt, X_OK)", SYS_access, "data/poem.txt", X_OK);
    T("access(data, W_OK)", SYS_access, "data", W_OK);
    T("access(data, X_OK)", SYS_access, "data", X_OK);
    T("access(data/missing, 0x10)", SYS_access, "data/missing", 0x10);
    T("access(data/tree/dangling, F_OK)", SYS_access, "data/tree/dangling", F_OK);
    T("faccessat2(data/tree/dangling, AT_SYMLINK_NOFOLLOW)", SYS_faccessat2, AT_FDCWD,
      "data/tree/dangling", F_OK, AT_SYMLINK_NOFOLLOW);
    T("faccessat2(flags 0x1)", SYS_faccessat2, AT_FDCWD, "data", F_OK, 0x1);
    T("faccessat2(fd, \"\", AT_EMPTY_PATH)", SYS_faccessat2, fd, "", R_OK, AT_EMPTY_PATH);
    T("faccessat(fd, x)", SYS_faccessat, fd, "x", R_OK);

    char buf[64];
    long n = T("readlink(data/tree/a)", SYS_readlink, "data/tree/a", buf, sizeof buf);
    bytes("target", buf, n);
    n = T("readlink(data/tree/a, size 3)", SYS_readlink, "data/tree/a", buf, 3L);
    bytes("target", buf, n);
    T("readlink(data/tree/a, size 0)", SYS_readlink, "data/tree/a", buf, 0L);
    T("readlink(data/tree/a, size -1)", SYS_readlink, "data/tree/a", buf, -1L);
    T("readlink(data/tree/a, NULL)", SYS_readlink, "data/tree/a", NULL, 10L);
    T("readlink(data/poem.txt)", SYS_readlink, "data/poem.txt", buf, sizeof buf);
    T("readlink(data)", SYS_readlink, "data", buf, sizeof buf);
    T("readlink(data/tree/a/)", SYS_readlink, "data/tree/a/", buf, sizeof buf);
    T("readlink(data/missing)", SYS_readlink, "data/missing", buf, sizeof buf);
    T("readlink(\"\")", SYS_readlink, "", buf, sizeof buf);
    T("readlink(data/tree/loop)", SYS_readlink, "data/tree/loop", buf, sizeof buf);
    T("readlinkat(poem fd, \"\")", SYS_readlinkat, fd, "", buf, sizeof buf);
    int lx = (int)S(SYS_open, "data/tree/lx", O_PATH | O_NOFOLLOW);
    n = T("readlinkat(lx O_PATH|O_NOFOLLOW, \"\")", SYS_readlinkat, lx, "", buf, sizeof buf);
    bytes("target", buf, n);
    stat_line("fstat(lx O_PATH|O_NOFOLLOW)", S(SYS_fstat, lx, &st), &st);
    close(lx);
    close(fd);

    printf("## working directory\n");
    n = T("getcwd(100)", SYS_getcwd, buf, 100);
    bytes("cwd", buf, n > 0 ? n - 1 : 0);
    T("getcwd(size 1)", SYS_getcwd, buf, 1);
    T("getcwd(NULL, 100)", SYS_getcwd, NULL, 100);
    T("chdir(data/tree/a)", SYS_chdir, "data/tree/a");
    n = S(SYS_getcwd, buf, sizeof buf);
    bytes("cwd", buf, n > 0 ? n - 1 : 0);
    cat("open(../x)", AT_FDCWD, "../x", O_RDONLY);
    cat("open(y)", AT_FDCWD, "y", O_RDONLY);
    cat("open(../../../../../../poem.txt)", AT_FDCWD, "../../../../../../poem.txt", O_RDONLY);
    cat("open(../../../../../../data/poem.txt)", AT_FDCWD, "../../../../../../data/poem.txt",
        O_RDONLY);
    T("chdir(..)", SYS_chdir, "..");
    n = S(SYS_getcwd, buf, sizeof buf);
    bytes("cwd", buf, n > 0 ? n - 1 : 0);
    T("chdir(../../../..)", SYS_chdir, "../../../..");
    n = S(SYS_getcwd, buf, sizeof buf);
    bytes("cwd", buf, n > 0 ? n - 1 : 0);
    T("chdir(data/poem.txt)", SYS_chdir, "data/poem.txt");
    T("chdir(\"\")", SYS_chdir, "");
    T("chdir(nope)", SYS_chdir, "nope");
    T("chdir(NULL)", SYS_chdir, NULL);
    T("chdir(data/tree/up)", SYS_chdir, "data/tree/up");
    n = S(SYS_getcwd, buf, sizeof buf);
    bytes("cwd", buf, n > 0 ? n - 1 : 0);
    int tree = (int)S(SYS_open, "data/tree", O_RDONLY | O_DIRECTORY);
    T("fchdir(data/tree)", SYS_fchdir, tree);
    n = S(SYS_getcwd, buf, sizeof buf);
    bytes("cwd", buf, n > 0 ? n - 1 : 0);
    cat("open(x)", AT_FDCWD, "x", O_RDONLY);
    fd = (int)S(SYS_open, "x", O_RDONLY);
    T("fchdir(file)", SYS_fchdir, fd);
    T("fchdir(999)", SYS_fchdir, 999);
    T("fchdir(0 (stdin))", SYS_fchdir, 0);
    close(fd);
    int dpath = (int)S(SYS_open, "dir", O_PATH);
    T("fchdir(dir O_PATH)", SYS_fchdir, dpath);
    n = S(SYS_getcwd, buf, sizeof buf);
    bytes("cwd", buf, n > 0 ? n - 1 : 0);
    close(dpath);
    close(tree);
    T("chdir(/)", SYS_chdir, "/");
}

static void section_rofs(void) {
    printf("## calls that would write to the read-only root\n");
    struct timespec now[2] = {{0, UTIME_NOW}, {0, UTIME_NOW}};
    struct timespec omit[2] = {{0, UTIME_OMIT}, {0, UTIME_OMIT}};
    struct timespec badns[2] = {{0, 1000000000}, {0, 0}};
    T("mkdir(data/new)", SYS_mkdir, "data/new", 0755);
    T("mkdir(data/new/)", SYS_mkdir, "data/new/", 0755);
    T("mkdir(data)", SYS_mkdir, "data", 0755);
    T("mkdir(/)", SYS_mkdir, "/", 0755);
    T("mkdir(data/.)", SYS_mkdir, "data/.", 0755);
    T("mkdir(data/..)", SYS_mkdir, "data/..", 0755);
    T("mkdir(data/tree/dangling)", SYS_mkdir, "data/tree/dangling", 0755);
    T("mkdir(nope/new)", SYS_mkdir, "nope/new", 0755);
    T("mkdir(data/poem.txt/new)", SYS_mkdir, "data/poem.txt/new", 0755);
    T("mkdir(\"\")", SYS_mkdir, "", 0755);
    T("mkdir(NULL)", SYS_mkdir, NULL, 0755);
    int file = (int)S(SYS_open, "data/poem.txt", O_RDONLY);
    int data = (int)S(SYS_open, "data", O_RDONLY | O_DIRECTORY);
    T("mkdirat(data, new)", SYS_mkdirat, data, "new", 0755);
    T("mkdirat(data, poem.txt)", SYS_mkdirat, data, "poem.txt", 0755);
    T("mkdirat(file, x)", SYS_mkdirat, file, "x", 0755);
    T("mkdirat(999, x)", SYS_mkdirat, 999, "x", 0755);
    T("mkdirat(999, /data/x)", SYS_mkdirat, 999, "/data/x", 0755);
    T("unlink(data/poem.txt)", SYS_unlink, "data/poem.txt");
    T("unlink(data/missing)", SYS_unlink, "data/missing");
    T("unlink(data/missing/)", SYS_unlink, "data/missing/");
    T("unlink(nope/x)", SYS_unlink, "nope/x");
    T("unlink(/)", SYS_unlink, "/");
    T("unlink(data/.)", SYS_unlink, "data/.");
    T("unlink(data/tree/loop/x)", SYS_unlink, "data/tree/loop/x");
    T("unlinkat(data, poem.txt, 0)", SYS_unlinkat, data, "poem.txt", 0);
    T("unlinkat(file, x, 0)", SYS_unlinkat, file, "x", 0);
    T("unlinkat(flags 0x1)", SYS_unlinkat, AT_FDCWD, "data/poem.txt", 0x1);
    T("unlinkat(data/tree, AT_REMOVEDIR)", SYS_unlinkat, AT_FDCWD, "data/tree", AT_REMOVEDIR);
    T("rmdir(data/tree)", SYS_rmdir, "data/tree");
    T("rmdir(data/missing)", SYS_rmdir, "data/missing");
    T("rmdir(data/.)", SYS_rmdir, "data/.");
    T("rmdir(data/..)", SYS_rmdir, "data/..");
    T("rmdir(/)", SYS_rmdir, "/");
    T("rmdir(nope/x)", SYS_rmdir, "nope/x");
    T("rename(data/poem.txt, data/p2)", SYS_rename, "data/poem.txt", "data/p2");
    T("rename(data/missing, data/p2)", SYS_rename, "data/missing", "data/p2");
    T("rename(nope/x, data/p2)", SYS_rename, "nope/x", "data/p2");
    T("rename(data/poem.txt, nope/x)", SYS_rename, "data/poem.txt", "nope/x");
    T("rename(data/., data/p2)", SYS_rename, "data/.", "data/p2");
    T("rename(data/poem.txt, /)", SYS_rename, "data/poem.txt", "/");
    T("rename(NULL, data/p2)", SYS_rename, NULL, "data/p2");
    T("rename(data/poem.txt, NULL)", SYS_rename, "data/poem.txt", NULL);
    T("rename(nope/x, NULL)", SYS_rename, "nope/x", NULL);
    T("renameat(data, poem.txt, data, p2)", SYS_renameat, data, "poem.txt", data, "p2");
    T("renameat2(NOREPLACE, to /)", SYS_renameat2, AT_FDCWD, "data/poem.txt", AT_FDCWD, "/",
      RENAME_NOREPLACE);
    T("renameat2(NOREPLACE|EXCHANGE)", SYS_renameat2, AT_FDCWD, "data/poem.txt", AT_FDCWD,
      "data/p2", RENAME_NOREPLACE | RENAME_EXCHANGE);
    T("renameat2(WHITEOUT)", SYS_renameat2, AT_FDCWD, "data/poem.txt", AT_FDCWD, "data/p2",
      RENAME_WHITEOUT);
    T("renameat2(flags 0x100)", SYS_renameat2, AT_FDCWD, "data/poem.txt", AT_FDCWD, "data/p2",
      0x100);
    T("link(data/poem.txt, data/p2)", SYS_link, "data/poem.txt", "data/p2");
    T("link(data/poem.txt, data/other.txt)", SYS_link, "data/poem.txt", "data/other.txt");
    T("link(data/missing, data/p2)", SYS_link, "data/missing", "data/p2");
    T("link(data/poem.txt, data/p2/)", SYS_link, "data/poem.txt", "data/p2/");
    T("link(data, data/d2)", SYS_link, "data", "data/d2");
    T("linkat(flags 0x1)", SYS_linkat, AT_FDCWD, "data/poem.txt", AT_FDCWD, "data/p2", 0x1);
    T("linkat(data/tree/dangling, p2, 0)", SYS_linkat, AT_FDCWD, "data/tree/dangling", AT_FDCWD,
      "data/p2", 0);
    T("linkat(data/tree/dangling, p2, FOLLOW)", SYS_linkat, AT_FDCWD, "data/tree/dangling",
      AT_FDCWD, "data/p2", AT_SYMLINK_FOLLOW);
    T("symlink(x, data/s)", SYS_symlink, "x", "data/s");
    T("symlink(x, data/poem.txt)", SYS_symlink, "x", "data/poem.txt");
    T("symlink(x, data/s/)", SYS_symlink, "x", "data/s/");
    T("symlink(\"\", data/s)", SYS_symlink, "", "data/s");
    T("symlink(NULL, data/s)", SYS_symlink, NULL, "data/s");
    T("symlinkat(x, file, s)", SYS_symlinkat, "x", file, "s");
    T("chmod(data/poem.txt)", SYS_chmod, "data/poem.txt", 0600);
    T("chmod(data/missing)", SYS_chmod, "data/missing", 0600);
    T("chmod(data/tree/dangling)", SYS_chmod, "data/tree/dangling", 0600);
    T("fchmod(file)", SYS_fchmod, file, 0600);
    T("fchmod(999)", SYS_fchmod, 999, 0600);
    int opath = (int)S(SYS_open, "data/poem.txt", O_PATH);
    T("fchmod(O_PATH fd)", SYS_fchmod, opath, 0600);
    T("fchmodat(data, poem.txt)", SYS_fchmodat, data, "poem.txt", 0600);
    T("fchmodat(file, x)", SYS_fchmodat, file, "x", 0600);
    T("fchmodat2(data/tree/lx, AT_SYMLINK_NOFOLLOW)", SYS_fchmodat2, AT_FDCWD, "data/tree/lx",
      0600, AT_SYMLINK_NOFOLLOW);
    T("fchmodat2(flags 0x1)", SYS_fchmodat2, AT_FDCWD, "data/poem.txt", 0600, 0x1);
    T("chown(data/poem.txt)", SYS_chown, "data/poem.txt", 0, 0);
    T("chown(data/missing)", SYS_chown, "data/missing", 0, 0);
    T("lchown(data/tree/dangling)", SYS_lchown, "data/tree/dangling", 0, 0);
    T("fchown(file)", SYS_fchown, file, 0, 0);
    T("fchown(999)", SYS_fchown, 999, 0, 0);
    T("fchown(O_PATH fd)", SYS_fchown, opath, 0, 0);
    T("fchownat(flags 0x1)", SYS_fchownat, AT_FDCWD, "data/poem.txt", 0, 0, 0x1);
    T("fchownat(file, \"\", AT_EMPTY_PATH)", SYS_fchownat, file, "", 0, 0, AT_EMPTY_PATH);
    T("truncate(data/poem.txt, 0)", SYS_truncate, "data/poem.txt", 0L);
    T("truncate(data/tree/lx, 0)", SYS_truncate, "data/tree/lx", 0L);
    T("truncate(data, 0)", SYS_truncate, "data", 0L);
    T("truncate(data/missing, 0)", SYS_truncate, "data/missing", 0L);
    T("truncate(data/poem.txt, -1)", SYS_truncate, "data/poem.txt", -1L);
    T("truncate(data/missing, -1)", SYS_truncate, "data/missing", -1L);
    T("ftruncate(file, 0)", SYS_ftruncate, file, 0L);
    T("ftruncate(file, -1)", SYS_ftruncate, file, -1L);
    T("ftruncate(data, 0)", SYS_ftruncate, data, 0L);
    T("ftruncate(999, 0)", SYS_ftruncate, 999, 0L);
    T("ftruncate(O_PATH fd, 0)", SYS_ftruncate, opath, 0L);
    T("ftruncate(1 (stdout pipe), 0)", SYS_ftruncate, 1, 0L);
    T("utimensat(data/poem.txt, NULL)", SYS_utimensat, AT_FDCWD, "data/poem.txt", NULL, 0);
    T("utimensat(data/poem.txt, NOW)", SYS_utimensat, AT_FDCWD, "data/poem.txt", now, 0);
    T("utimensat(data/poem.txt, OMIT)", SYS_utimensat, AT_FDCWD, "data/poem.txt", omit, 0);
    T("utimensat(data/missing, OMIT)", SYS_utimensat, AT_FDCWD, "data/missing", omit, 0);
    T("utimensat(data/missing, NOW)", SYS_utimensat, AT_FDCWD, "data/missing", now, 0);
    T("utimensat(data/poem.txt, bad nsec)", SYS_utimensat, AT_FDCWD, "data/poem.txt", badns, 0);
    T("utimensat(data/missing, bad nsec)", SYS_utimensat, AT_FDCWD, "data/missing", badns, 0);
    T("utimensat(data/poem.txt, times NULL+1)", SYS_utimensat, AT_FDCWD, "data/poem.txt",
      (void *)1, 0);
    T("utimensat(file, NULL path)", SYS_utimensat, file, NULL, NULL, 0);
    T("utimensat(file, NULL path, NOFOLLOW)", SYS_utimensat, file, NULL, NULL,
      AT_SYMLINK_NOFOLLOW);
    T("utimensat(AT_FDCWD, NULL path)", SYS_utimensat, AT_FDCWD, NULL, NULL, 0);
    T("utimensat(999, NULL path)", SYS_utimensat, 999, NULL, NULL, 0);
    T("utimensat(O_PATH fd, NULL path)", SYS_utimensat, opath, NULL, NULL, 0);
    T("utimensat(flags 0x1)", SYS_utimensat, AT_FDCWD, "data/poem.txt", NULL, 0x1);
    T("mknod(data/n, S_IFIFO)", SYS_mknod, "data/n", S_IFIFO | 0644, 0);
    T("mknod(data/n, S_IFDIR)", SYS_mknod, "data/n", S_IFDIR | 0644, 0);
    T("mknod(data/n, type 0170000)", SYS_mknod, "data/n", 0170644, 0);
    T("mknod(nope/n, S_IFDIR)", SYS_mknod, "nope/n", S_IFDIR | 0644, 0);
    T("mknod(data/poem.txt, S_IFREG)", SYS_mknod, "data/poem.txt", S_IFREG | 0644, 0);
    T("mknodat(data, n, S_IFCHR)", SYS_mknodat, data, "n", S_IFCHR | 0644, 0);
    T("creat(data/new)", SYS_creat, "data/new", 0644);
    T("creat(data/poem.txt)", SYS_creat, "data/poem.txt", 0644);
    T("creat(data)", SYS_creat, "data", 0644);
    T("creat(nope/new)", SYS_creat, "nope/new", 0644);
    close(opath);
    close(data);
    close(file);
}

static void section_fds(void) {
    printf("## descriptors\n");
    int fd = (int)S(SYS_open, "data/poem.txt", O_RDONLY);
    T("dup(999)", SYS_dup, 999);
    T("dup(-1)", SYS_dup, -1);
    T("dup2(fd, fd)", SYS_dup2, fd, fd);
    T("dup2(999, 999)", SYS_dup2, 999, 999);
    T("dup2(fd, -1)", SYS_dup2, fd, -1);
    T("dup2(fd, 1024)", SYS_dup2, fd, 1024);
    T("dup3(fd, fd, 0)", SYS_dup3, fd, fd, 0);
    T("dup3(fd, 100, O_CLOEXEC)", SYS_dup3, fd, 100, O_CLOEXEC);
    T("  fcntl(100, F_GETFD)", SYS_fcntl, 100, F_GETFD);
    T("dup3(fd, 50, 0x1)", SYS_dup3, fd, 50, 0x1);
    T("dup3(999, 50, 0x1)", SYS_dup3, 999, 50, 0x1);
    T("fcntl(fd, F_DUPFD, 1024)", SYS_fcntl, fd, F_DUPFD, 1024);
    T("fcntl(fd, F_DUPFD, 30)", SYS_fcntl, fd, F_DUPFD, 30);
    T("fcntl(fd, F_DUPFD_CLOEXEC, 30)", SYS_fcntl, fd, F_DUPFD_CLOEXEC, 30);
    T("  fcntl(31, F_GETFD)", SYS_fcntl, 31, F_GETFD);
    T("fcntl(fd, F_SETFD, 7)", SYS_fcntl, fd, F_SETFD, 7);
    T("  fcntl(fd, F_GETFD)", SYS_fcntl, fd, F_GETFD);
    T("fcntl(fd, 12345)", SYS_fcntl, fd, 12345);
    T("fcntl(999, F_GETFD)", SYS_fcntl, 999, F_GETFD);
    T("fcntl(999, 12345)", SYS_fcntl, 999, 12345);
    T("close(100)", SYS_close, 100);
    T("close(100) again", SYS_close, 100);
    T("close(-1)", SYS_close, -1);
    T("close(30)", SYS_close, 30);
    T("close(31)", SYS_close, 31);
    T("ioctl(fd, TCGETS)", SYS_ioctl, fd, 0x5401, NULL);
    T("ioctl(999, TCGETS)", SYS_ioctl, 999, 0x5401, NULL);
    T("ioctl(1 (pipe), TIOCGWINSZ)", SYS_ioctl, 1, 0x5413, NULL);
    close(fd);
    S(SYS_umask, 022);
    T("umask(0777)", SYS_umask, 0777);
    T("umask(022)", SYS_umask, 022);
}

static void section_mm(void) {
    printf("## mmap, munmap, mprotect, madvise, mremap, msync, brk\n");
    long pg = 4096;
    T("mmap(len 0)", SYS_mmap, NULL, 0, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    T("mmap(no MAP_SHARED/PRIVATE)", SYS_mmap, NULL, pg, PROT_READ, MAP_ANONYMOUS, -1, 0);
    T("mmap(offset 1, anonymous)", SYS_mmap, NULL, pg, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS,
      -1, 1);
    show_addr("mmap(offset 4096, anonymous)",
              S(SYS_mmap, NULL, pg, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, pg), 0);
    show_addr("mmap(prot 0x10)", S(SYS_mmap, NULL, pg, 0x10, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
              0);
    T("mmap(len 1<<62)", SYS_mmap, NULL, 1L << 62, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    T("mmap(len -4096)", SYS_mmap, NULL, -4096L, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    /* (Not at 0x1000: mmap_min_addr is the host's natively, 2 MiB on an island.) */
    T("mmap(MAP_FIXED at 0)", SYS_mmap, NULL, pg, PROT_READ,
      MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    T("mmap(MAP_FIXED at 0x1001)", SYS_mmap, (void *)0x1001, pg, PROT_READ,
      MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    T("mmap(MAP_FIXED at 1<<47)", SYS_mmap, (void *)(1L << 47), pg, PROT_READ,
      MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    T("mmap(file, fd -1)", SYS_mmap, NULL, pg, PROT_READ, MAP_PRIVATE, -1, 0);
    T("mmap(file, fd 999)", SYS_mmap, NULL, pg, PROT_READ, MAP_PRIVATE, 999, 0);
    int dir = (int)S(SYS_open, "data", O_RDONLY | O_DIRECTORY);
    T("mmap(directory)", SYS_mmap, NULL, pg, PROT_READ, MAP_PRIVATE, dir, 0);
    close(dir);
    int opath = (int)S(SYS_open, "data/poem.txt", O_PATH);
    T("mmap(O_PATH fd)", SYS_mmap, NULL, pg, PROT_READ, MAP_PRIVATE, opath, 0);
    close(opath);
    int fd = (int)S(SYS_open, "data/poem.txt", O_RDONLY);
    T("mmap(file, MAP_SHARED, PROT_WRITE)", SYS_mmap, NULL, pg, PROT_READ | PROT_WRITE,
      MAP_SHARED, fd, 0);
    T("mmap(file, offset 1)", SYS_mmap, NULL, pg, PROT_READ, MAP_PRIVATE, fd, 1);
    T("mmap(stdout pipe)", SYS_mmap, NULL, pg, PROT_READ, MAP_PRIVATE, 1, 0);
    char *m = (char *)show_addr("mmap(file, MAP_PRIVATE, PROT_READ|PROT_WRITE)",
                                S(SYS_mmap, NULL, 2 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE,
                                  fd, 0),
                                0);
    if (m != MAP_FAILED) {
        bytes("mapped", m, 20);
        /* (Not m[4096]: a page wholly past the file's end is SIGBUS on Linux, zeros on an
         * island, whose file mappings are copies.) */
        note("byte 4095: %d", m[4095]);
        memcpy(m, "DIRTY", 5);
        T("madvise(file mapping, MADV_DONTNEED)", SYS_madvise, m, pg, MADV_DONTNEED);
        bytes("after DONTNEED", m, 20);
        T("madvise(file mapping, MADV_FREE)", SYS_madvise, m, pg, MADV_FREE);
        T("madvise(file mapping, MADV_REMOVE)", SYS_madvise, m, pg, MADV_REMOVE);
        T("madvise(file mapping, MADV_WIPEONFORK)", SYS_madvise, m, pg, MADV_WIPEONFORK);
        T("msync(file mapping, MS_SYNC)", SYS_msync, m, pg, MS_SYNC);
        memcpy(m, "AGAIN", 5);
        char *moved = (char *)show_addr("mremap(file mapping, grow to 3 pages, MAYMOVE)",
                                        S(SYS_mremap, m, 2 * pg, 3 * pg, MREMAP_MAYMOVE), 0);
        if (moved != MAP_FAILED) {
            bytes("after mremap", moved, 20);
            T("madvise(moved mapping, MADV_DONTNEED)", SYS_madvise, moved, 3 * pg, MADV_DONTNEED);
            bytes("after DONTNEED", moved, 20);
            munmap(moved, 3 * pg);
        }
    }
    close(fd);

    /* 8 pages, and the 9th unmapped (whatever the kernel places around them). */
    char *p = (char *)S(SYS_mmap, NULL, 9 * pg, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    S(SYS_munmap, p + 8 * pg, pg);
    memset(p, 'x', 8 * pg);
    show_addr("mmap(MAP_FIXED_NOREPLACE over a mapping)",
              S(SYS_mmap, p, pg, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1,
                0),
              (long)p);
    show_addr("mmap(hint = a mapped page)",
              S(SYS_mmap, p, pg, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), (long)p);
    T("munmap(p+1, 4096)", SYS_munmap, p + 1, pg);
    T("munmap(p, 0)", SYS_munmap, p, 0);
    T("munmap(NULL, 4096)", SYS_munmap, NULL, pg);
    T("munmap(0x10000, 4096)", SYS_munmap, (void *)0x10000, pg);
    T("munmap(1<<47, 4096)", SYS_munmap, (void *)(1L << 47), pg);
    T("munmap(unmapped page)", SYS_munmap, unmapped, pg);
    T("munmap(p, 1<<62)", SYS_munmap, p, 1L << 62);
    T("mprotect(p+1, 4096, PROT_READ)", SYS_mprotect, p + 1, pg, PROT_READ);
    T("mprotect(p, 0, PROT_READ)", SYS_mprotect, p, 0, PROT_READ);
    T("mprotect(p, 4096, 0x10)", SYS_mprotect, p, pg, 0x10);
    T("mprotect(unmapped page, PROT_READ)", SYS_mprotect, unmapped, pg, PROT_READ);
    T("mprotect(p+7 pages, 2 pages (the second unmapped))", SYS_mprotect, p + 7 * pg, 2 * pg,
      PROT_READ);
    T("  write(1) from p+7 pages (readable)", SYS_write, 1, p + 7 * pg, 1);
    T("  read(poem.txt) into p+7 pages (read-only now?)", SYS_read, poem, p + 7 * pg, 1);
    T("mprotect(p+7 pages, 1, PROT_SEM)", SYS_mprotect, p + 7 * pg, 1, 0x8);
    T("mprotect(p+7 pages, 1, PROT_GROWSDOWN|PROT_GROWSUP)", SYS_mprotect, p + 7 * pg, 1,
      PROT_GROWSDOWN | PROT_GROWSUP);
    T("mprotect(unmapped page, 2 pages, PROT_READ)", SYS_mprotect, unmapped, 2 * pg, PROT_READ);
    T("mprotect(p+7 pages, 1, PROT_READ)", SYS_mprotect, p + 7 * pg, 1, PROT_READ);
    T("  read(poem.txt) into it", SYS_read, poem, p + 7 * pg, 1);
    T("  getcwd into it", SYS_getcwd, p + 7 * pg, 100);
    T("mprotect(p+7 pages, 1, PROT_NONE)", SYS_mprotect, p + 7 * pg, 1, PROT_NONE);
    T("  write(1) from it", SYS_write, 1, p + 7 * pg, 1);
    T("  uname into it", SYS_uname, p + 7 * pg);
    T("mprotect(p+7 pages, 1, PROT_READ|PROT_WRITE)", SYS_mprotect, p + 7 * pg, 1,
      PROT_READ | PROT_WRITE);
    T("  read(poem.txt) into it", SYS_read, poem, p + 7 * pg, 1);
    T("madvise(p+1, 4096, MADV_DONTNEED)", SYS_madvise, p + 1, pg, MADV_DONTNEED);
    T("madvise(p, 0, MADV_DONTNEED)", SYS_madvise, p, 0, MADV_DONTNEED);
    T("madvise(p, 4096, 999)", SYS_madvise, p, pg, 999);
    T("madvise(p, 4096, -1)", SYS_madvise, p, pg, -1);
    T("madvise(p, -1, MADV_DONTNEED)", SYS_madvise, p, -1L, MADV_DONTNEED);
    T("madvise(unmapped, 4096, MADV_NORMAL)", SYS_madvise, unmapped, pg, MADV_NORMAL);
    T("madvise(unmapped, 4096, 999)", SYS_madvise, unmapped, pg, 999);
    T("madvise(p, 4096, MADV_WILLNEED)", SYS_madvise, p, pg, MADV_WILLNEED);
    T("madvise(p, 4096, MADV_REMOVE) (anonymous)", SYS_madvise, p, pg, MADV_REMOVE);
    T("madvise(p, 4096, MADV_WIPEONFORK)", SYS_madvise, p, pg, MADV_WIPEONFORK);
    T("madvise(p, 4096, MADV_POPULATE_WRITE)", SYS_madvise, p, pg, MADV_POPULATE_WRITE);
    T("madvise(p, 4096, MADV_DONTNEED)", SYS_madvise, p, pg, MADV_DONTNEED);
    note("p[0] after DONTNEED: %d, p[4096]: %c", p[0], p[pg]);
    /* A hole in the middle: the advice applies around it, and the answer is ENOMEM. */
    munmap(p + 3 * pg, pg);
    p[2 * pg] = 'y';
    p[4 * pg] = 'z';
    T("madvise(p+2 pages, 3 pages with a hole, DONTNEED)", SYS_madvise, p + 2 * pg, 3 * pg,
      MADV_DONTNEED);
    note("p[2 pages]: %d, p[4 pages]: %d", p[2 * pg], p[4 * pg]);
    T("msync(p+1)", SYS_msync, p + 1, pg, MS_SYNC);
    T("msync(p, MS_SYNC|MS_ASYNC)", SYS_msync, p, pg, MS_SYNC | MS_ASYNC);
    T("msync(p, flags 0x100)", SYS_msync, p, pg, 0x100);
    T("msync(p, 5 pages with a hole)", SYS_msync, p, 5 * pg, MS_SYNC);
    T("msync(unmapped)", SYS_msync, unmapped, pg, MS_ASYNC);
    T("msync(p, 0)", SYS_msync, p, 0, MS_SYNC);
    T("mprotect(p, 5 pages with a hole, PROT_READ)", SYS_mprotect, p, 5 * pg, PROT_READ);
    T("  read(poem.txt) into p+2 pages (before the hole)", SYS_read, poem, p + 2 * pg, 1);
    T("  read(poem.txt) into p+4 pages (after it)", SYS_read, poem, p + 4 * pg, 1);
    T("mprotect(p, 3 pages, PROT_READ|PROT_WRITE)", SYS_mprotect, p, 3 * pg,
      PROT_READ | PROT_WRITE);
    T("mremap(p+1)", SYS_mremap, p + 1, pg, 2 * pg, MREMAP_MAYMOVE);
    T("mremap(new len 0)", SYS_mremap, p, pg, 0, MREMAP_MAYMOVE);
    T("mremap(flags 0x100)", SYS_mremap, p, pg, 2 * pg, 0x100);
    T("mremap(FIXED without MAYMOVE)", SYS_mremap, p, pg, 2 * pg, MREMAP_FIXED, p + 5 * pg);
    T("mremap(unmapped)", SYS_mremap, unmapped, pg, 2 * pg, MREMAP_MAYMOVE);
    T("mremap(old len past the mapping)", SYS_mremap, p + 2 * pg, 2 * pg, 4 * pg, MREMAP_MAYMOVE);
    show_addr("mremap(p+4 pages, shrink 4 pages to 1)", S(SYS_mremap, p + 4 * pg, 4 * pg, pg, 0),
              (long)(p + 4 * pg));
    T("  mprotect(p+5 pages) (gone)", SYS_mprotect, p + 5 * pg, pg, PROT_READ);
    T("mremap(grow p+2 pages into the hole, no MAYMOVE)", SYS_mremap, p + 2 * pg, pg, 3 * pg, 0);
    show_addr("mremap(grow p into the hole+1 page, no MAYMOVE)",
              S(SYS_mremap, p + 2 * pg, pg, 2 * pg, 0), (long)(p + 2 * pg));
    note("p[2 pages]: %d, p[3 pages]: %d", p[2 * pg], p[3 * pg]);
    T("mremap(FIXED onto itself)", SYS_mremap, p, pg, pg, MREMAP_MAYMOVE | MREMAP_FIXED, p);
    p[0] = 'q';
    char *q = (char *)show_addr("mremap(p, 1 page -> 2, MAYMOVE)",
                                S(SYS_mremap, p, pg, 2 * pg, MREMAP_MAYMOVE), 0);
    if (q != MAP_FAILED)
        note("moved byte: %c, new page: %d", q[0], q[pg]);
    long b0 = S(SYS_brk, 0);
    note("brk(1) unchanged: %d", S(SYS_brk, 1) == b0);
    note("brk(-4096) unchanged: %d", S(SYS_brk, -4096L) == b0);
    note("brk(+8 pages) grows: %d", S(SYS_brk, b0 + 8 * pg) == b0 + 8 * pg);
    ((char *)b0)[8 * pg - 1] = 1;
    note("brk(back) shrinks: %d", S(SYS_brk, b0) == b0);

    printf("## the executable's own pages\n");
    /* A page of .data of its own (4096 bytes, page-aligned). */
    static char data_var[4096] __attribute__((aligned(4096))) = "initial .data";
    memcpy(data_var, "changed .data", 14);
    T("madvise(.data page, MADV_DONTNEED)", SYS_madvise, data_var, pg, MADV_DONTNEED);
    note(".data now: %s", data_var);
    T("madvise(.data page, MADV_FREE)", SYS_madvise, data_var, pg, MADV_FREE);
    T("mprotect(.data page, PROT_READ)", SYS_mprotect, data_var, pg, PROT_READ);
    T("  read(poem.txt) into it", SYS_read, poem, data_var, 1);
    T("mprotect(.data page, PROT_READ|PROT_WRITE)", SYS_mprotect, data_var, pg,
      PROT_READ | PROT_WRITE);
}

static int futex_word = 1;

static void section_futex(void) {
    printf("## futex\n");
    int *unaligned = (int *)((char *)&futex_word + 1);
    struct timespec zero = {0, 0}, badts = {0, 1000000000}, negts = {-1, 0};
    const char *names[] = {"NULL", "unaligned", "kernel", "unmapped", "read-only", "word"};
    static const int ro_word = 5;
    void *addrs[] = {NULL, unaligned, KERNEL, unmapped, (void *)&ro_word, &futex_word};
    for (int i = 0; i < 6; i++) {
        for (int priv = 0; priv < 2; priv++) {
            int p = priv ? FUTEX_PRIVATE_FLAG : 0;
            const char *s = priv ? "_PRIVATE" : "";
            void *a = addrs[i];
            T(F("WAKE%s(%s)", s, names[i]), SYS_futex, a, FUTEX_WAKE | p, 1, NULL, NULL, 0);
            T(F("WAKE%s(%s, n 0)", s, names[i]), SYS_futex, a, FUTEX_WAKE | p, 0, NULL, NULL, 0);
            T(F("WAKE_BITSET%s(%s, bitset 0)", s, names[i]), SYS_futex, a,
              FUTEX_WAKE_BITSET | p, 1, NULL, NULL, 0);
            T(F("REQUEUE%s(%s, word)", s, names[i]), SYS_futex, a, FUTEX_REQUEUE | p, 1, 1,
              &futex_word, 0);
            T(F("REQUEUE%s(word, %s)", s, names[i]), SYS_futex, &futex_word, FUTEX_REQUEUE | p, 1,
              1, a, 0);
            T(F("REQUEUE%s(%s, word, n -1)", s, names[i]), SYS_futex, a, FUTEX_REQUEUE | p, -1, 1,
              &futex_word, 0);
            T(F("CMP_REQUEUE%s(%s, word, 1)", s, names[i]), SYS_futex, a,
              FUTEX_CMP_REQUEUE | p, 1, 1, &futex_word, 1);
            T(F("WAKE_OP%s(%s, word)", s, names[i]), SYS_futex, a, FUTEX_WAKE_OP | p, 1, 1,
              &futex_word, FUTEX_OP(FUTEX_OP_ADD, 1, FUTEX_OP_CMP_EQ, 0));
            T(F("WAKE_OP%s(word, %s)", s, names[i]), SYS_futex, &futex_word, FUTEX_WAKE_OP | p, 1,
              1, a, FUTEX_OP(FUTEX_OP_ADD, 1, FUTEX_OP_CMP_EQ, 0));
            T(F("WAKE_OP%s(word, %s, op 7)", s, names[i]), SYS_futex, &futex_word,
              FUTEX_WAKE_OP | p, 1, 1, a, 7 << 28);
            T(F("WAIT%s(%s, 12345)", s, names[i]), SYS_futex, a, FUTEX_WAIT | p, 12345, NULL,
              NULL, 0);
            T(F("WAIT%s(%s, timeout 0)", s, names[i]), SYS_futex, a, FUTEX_WAIT | p,
              *(volatile int *)&futex_word, &zero, NULL, 0);
        }
        note("word = %d", futex_word);
    }
    int w = futex_word;
    T("WAIT(word, bad timeout pointer)", SYS_futex, &futex_word, FUTEX_WAIT, w, BAD, NULL, 0);
    T("WAIT(word, nsec 1e9)", SYS_futex, &futex_word, FUTEX_WAIT, w, &badts, NULL, 0);
    T("WAIT(word, sec -1)", SYS_futex, &futex_word, FUTEX_WAIT, w, &negts, NULL, 0);
    T("WAIT(word, timeout 0)", SYS_futex, &futex_word, FUTEX_WAIT, w, &zero, NULL, 0);
    T("WAIT(unaligned, bad timeout pointer)", SYS_futex, unaligned, FUTEX_WAIT, w, BAD, NULL, 0);
    T("WAIT_BITSET(word, bitset 0)", SYS_futex, &futex_word, FUTEX_WAIT_BITSET, w, &zero, NULL,
      0);
    T("WAIT_BITSET(word, absolute 0)", SYS_futex, &futex_word, FUTEX_WAIT_BITSET, w, &zero, NULL,
      -1);
    T("WAIT_BITSET|CLOCK_REALTIME(word, absolute 0)", SYS_futex, &futex_word,
      FUTEX_WAIT_BITSET | FUTEX_CLOCK_REALTIME, w, &zero, NULL, -1);
    T("WAIT|CLOCK_REALTIME(word, timeout 0)", SYS_futex, &futex_word,
      FUTEX_WAIT | FUTEX_CLOCK_REALTIME, w, &zero, NULL, 0);
    T("WAKE|CLOCK_REALTIME(word)", SYS_futex, &futex_word, FUTEX_WAKE | FUTEX_CLOCK_REALTIME, 1,
      NULL, NULL, 0);
    T("REQUEUE|CLOCK_REALTIME(word)", SYS_futex, &futex_word,
      FUTEX_REQUEUE | FUTEX_CLOCK_REALTIME, 1, 1, &futex_word, 0);
    T("futex op 99", SYS_futex, &futex_word, 99, 1, NULL, NULL, 0);
    T("REQUEUE(word, word, n_requeue -1)", SYS_futex, &futex_word, FUTEX_REQUEUE, 1, -1L,
      &futex_word, 0);
    T("CMP_REQUEUE(word, word, wrong value)", SYS_futex, &futex_word, FUTEX_CMP_REQUEUE, 1, 1,
      &futex_word, futex_word + 1);
    futex_word = 10;
    T("WAKE_OP(SET 3)", SYS_futex, &futex_word, FUTEX_WAKE_OP, 1, 1, &futex_word,
      FUTEX_OP(FUTEX_OP_SET, 3, FUTEX_OP_CMP_EQ, 10));
    note("word = %d", futex_word);
    T("WAKE_OP(ADD -1 (12-bit))", SYS_futex, &futex_word, FUTEX_WAKE_OP, 1, 1, &futex_word,
      FUTEX_OP(FUTEX_OP_ADD, 0xfff, FUTEX_OP_CMP_EQ, 0));
    note("word = %d", futex_word);
    T("WAKE_OP(OR 1<<4 by shift)", SYS_futex, &futex_word, FUTEX_WAKE_OP, 1, 1, &futex_word,
      FUTEX_OP((FUTEX_OP_OR | FUTEX_OP_OPARG_SHIFT), 4, FUTEX_OP_CMP_EQ, 0));
    note("word = %d", futex_word);
    T("WAKE_OP(ANDN shift 36)", SYS_futex, &futex_word, FUTEX_WAKE_OP, 1, 1, &futex_word,
      FUTEX_OP((FUTEX_OP_ANDN | FUTEX_OP_OPARG_SHIFT), 36, FUTEX_OP_CMP_EQ, 0));
    note("word = %d", futex_word);
    T("WAKE_OP(XOR 5, cmp 9)", SYS_futex, &futex_word, FUTEX_WAKE_OP, 1, 1, &futex_word,
      FUTEX_OP(FUTEX_OP_XOR, 5, 9, 0));
    note("word = %d", futex_word);
    T("WAKE_OP(op 6)", SYS_futex, &futex_word, FUTEX_WAKE_OP, 1, 1, &futex_word, 6 << 28);
    note("word = %d", futex_word);
    T("WAKE_OP(cmp -1 < 0 (12-bit))", SYS_futex, &futex_word, FUTEX_WAKE_OP, 1, 1, &futex_word,
      FUTEX_OP(FUTEX_OP_SET, 0xfff, FUTEX_OP_CMP_LT, 0xfff));
    note("word = %d", futex_word);
}

static void section_more(void) {
    printf("## poll, fcntl flags, seeks, odd opens\n");
    struct pollfd {
        int fd;
        short events, revents;
    } pfd[3] = {{0, 1, 0}, {-1, 1, 0}, {999, 1, 0}};
    long n = T("poll([stdin, -1, 999], 0 ms)", SYS_poll, pfd, 3, 0);
    note("revents %d %d %d", pfd[0].revents, pfd[1].revents, pfd[2].revents);
    T("poll(NULL, 1, 0)", SYS_poll, NULL, 1, 0);
    T("poll(NULL, 0, 0)", SYS_poll, NULL, 0, 0);
    T("poll(nfds 1025)", SYS_poll, pfd, 1025, 0);
    struct timespec bad = {0, 1000000000}, zero = {0, 0};
    T("ppoll(timeout nsec 1e9)", SYS_ppoll, pfd, 1, &bad, NULL, 8);
    T("ppoll(timeout NULL+1)", SYS_ppoll, pfd, 1, (void *)1, NULL, 8);
    T("ppoll(zero timeout)", SYS_ppoll, pfd, 1, &zero, NULL, 8);
    unsigned long mask = 0;
    T("ppoll(sigsetsize 4)", SYS_ppoll, pfd, 1, &zero, &mask, 4);
    (void)n;
    int fd = (int)S(SYS_open, "data/poem.txt", O_RDONLY);
    T("fcntl(F_SETFL, O_APPEND|O_NONBLOCK)", SYS_fcntl, fd, F_SETFL, O_APPEND | O_NONBLOCK);
    T("  fcntl(F_GETFL)", SYS_fcntl, fd, F_GETFL);
    T("fcntl(F_SETFL, O_RDWR) (ignored)", SYS_fcntl, fd, F_SETFL, O_RDWR);
    T("  fcntl(F_GETFL)", SYS_fcntl, fd, F_GETFL);
    T("lseek(SEEK_DATA, 0)", SYS_lseek, fd, 0L, SEEK_DATA);
    T("lseek(SEEK_HOLE, 0)", SYS_lseek, fd, 0L, SEEK_HOLE);
    T("lseek(SEEK_DATA, 1000)", SYS_lseek, fd, 1000L, SEEK_DATA);
    T("lseek(SEEK_END, -10)", SYS_lseek, fd, -10L, SEEK_END);
    T("lseek(1<<62, SEEK_CUR)", SYS_lseek, fd, 1L << 62, SEEK_CUR);
    T("lseek(1<<62, SEEK_CUR) again", SYS_lseek, fd, 1L << 62, SEEK_CUR);
    close(fd);
    T("open(data/poem.txt, O_PATH|O_DIRECTORY)", SYS_open, "data/poem.txt",
      O_PATH | O_DIRECTORY);
    T("open(data/tree/lx, O_PATH|O_DIRECTORY)", SYS_open, "data/tree/lx",
      O_PATH | O_DIRECTORY);
    T("open(data/tree/a, O_PATH|O_DIRECTORY|O_NOFOLLOW)", SYS_open, "data/tree/a",
      O_PATH | O_DIRECTORY | O_NOFOLLOW);
    T("open(data/tree/a, O_DIRECTORY|O_NOFOLLOW)", SYS_open, "data/tree/a",
      O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
    struct stat st;
    stat_line("fstat(1 (stdout))", S(SYS_fstat, 1, &st), &st);
    static char sx[256];
    long r = T("statx(data/tree/lx, AT_SYMLINK_NOFOLLOW)", SYS_statx, AT_FDCWD, "data/tree/lx",
               AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, sx);
    if (r == 0)
        note("size %llu mode %06o", (unsigned long long)*(uint64_t *)(sx + 40),
             *(uint16_t *)(sx + 28));
    char buf[64];
    T("getcwd(size 2, exactly \"/\")", SYS_getcwd, buf, 2);
    int dir = (int)S(SYS_open, "data/tree", O_RDONLY | O_DIRECTORY);
    T("pread(directory)", SYS_pread64, dir, buf, 10L, 0L);
    static char d[4096];
    long a = S(SYS_getdents64, dir, d, sizeof d);
    T("lseek(directory, 0, SEEK_SET)", SYS_lseek, dir, 0L, SEEK_SET);
    long b = S(SYS_getdents64, dir, d, sizeof d);
    note("getdents64 after rewinding gives the same: %d", a == b && a > 0);
    T("getdents64 at the end", SYS_getdents64, dir, d, sizeof d);
    close(dir);

    printf("## shared anonymous memory, file mappings\n");
    long pg = 4096;
    char *sh = (char *)S(SYS_mmap, NULL, 2 * pg, PROT_READ | PROT_WRITE,
                         MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    memset(sh, 's', 2 * pg);
    T("madvise(MAP_SHARED anonymous, MADV_DONTNEED)", SYS_madvise, sh, pg, MADV_DONTNEED);
    note("sh[0] after DONTNEED: %d", sh[0]);
    T("madvise(MAP_SHARED anonymous, MADV_FREE)", SYS_madvise, sh, pg, MADV_FREE);
    T("madvise(MAP_SHARED anonymous, MADV_REMOVE)", SYS_madvise, sh, pg, MADV_REMOVE);
    note("sh[0] after REMOVE: %d", sh[0]);
    munmap(sh, 2 * pg);
    fd = (int)S(SYS_open, "data/big.txt", O_RDONLY);
    char *m = (char *)S(SYS_mmap, NULL, 4 * pg, PROT_READ, MAP_PRIVATE, fd, pg);
    if (m != MAP_FAILED) {
        bytes("big.txt at 4096", m, 16);
        T("mprotect(file mapping page 1, PROT_READ|PROT_WRITE)", SYS_mprotect, m + pg, pg,
          PROT_READ | PROT_WRITE);
        memcpy(m + pg, "DIRTY", 5);
        char *m2 = (char *)show_addr("mremap(file mapping, shrink to 2 pages)",
                                     S(SYS_mremap, m, 4 * pg, 2 * pg, 0), (long)m);
        (void)m2;
        T("  mprotect(page 3) (gone)", SYS_mprotect, m + 3 * pg, pg, PROT_READ);
        T("madvise(pages 0-1, MADV_DONTNEED)", SYS_madvise, m, 2 * pg, MADV_DONTNEED);
        bytes("page 1 again", m + pg, 16);
        /* A place of our own to move it to (whatever the kernel maps around). */
        char *hole = (char *)S(SYS_mmap, NULL, 2 * pg, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS,
                               -1, 0);
        S(SYS_munmap, hole, 2 * pg);
        char *m3 = (char *)show_addr("mremap(page 1 to a hole, MAYMOVE|FIXED)",
                                     S(SYS_mremap, m + pg, pg, pg,
                                       MREMAP_MAYMOVE | MREMAP_FIXED, hole),
                                     (long)hole);
        if (m3 != MAP_FAILED) {
            T("madvise(moved page, MADV_DONTNEED)", SYS_madvise, m3, pg, MADV_DONTNEED);
            bytes("moved page", m3, 16);
        }
    }
    close(fd);
}

int main(int argc, char **argv) {
    /* Writes below must fail on both sides: refuse to run on a writable root. */
    if (syscall(SYS_access, "/", W_OK) == 0 || errno != EROFS) {
        fprintf(stderr, "difftest: the root is not read-only (run it in a read-only root)\n");
        return 1;
    }
    page_pair = (char *)syscall(SYS_mmap, NULL, 2 * 4096, PROT_READ | PROT_WRITE,
                                MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    syscall(SYS_munmap, page_pair + 4096, 4096);
    unmapped = (char *)syscall(SYS_mmap, NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1,
                               0);
    syscall(SYS_munmap, unmapped, 4096);
    poem = (int)syscall(SYS_open, "data/poem.txt", O_RDONLY | O_CLOEXEC);
    syscall(SYS_dup2, poem, 200);
    syscall(SYS_close, poem);
    poem = 200;
    struct {
        const char *name;
        void (*run)(void);
    } sections[] = {{"paths", section_paths}, {"io", section_io},     {"names", section_names},
                    {"rofs", section_rofs},   {"fds", section_fds},   {"mm", section_mm},
                    {"futex", section_futex}, {"more", section_more}};
    int n = sizeof sections / sizeof sections[0];
    for (int i = 0; i < n; i++) {
        int wanted = argc < 2;
        for (int k = 1; k < argc; k++)
            wanted |= !strcmp(argv[k], sections[i].name);
        if (wanted)
            sections[i].run();
    }
    printf("## end\n");
    return 0;
}
