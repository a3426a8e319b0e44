/* Regression checks of the island kernel's file, memory, futex and thread calls, one mode each
 * (usage: regress MODE). Each prints what it observes; the tests compare it with Linux's answer
 * (the program run natively) and with the values Linux must give. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
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

static void show(const char *what, long r) {
    if (r < 0)
        printf("%-44s = -1 %s\n", what, strerrorname_np(errno) ? strerrorname_np(errno) : "?");
    else
        printf("%-44s = %ld\n", what, r);
    fflush(stdout);
}

#define CALL(...) (errno = 0, syscall(__VA_ARGS__))

/* FNV-1a of a buffer, to compare big buffers in one line. */
static uint64_t fnv(const unsigned char *p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

/* readv with a first buffer over 1 MiB. */
static int readv_big(void) {
    size_t big = 2 << 20;
    unsigned char *a = malloc(big), *b = malloc(3 << 20);
    unsigned char small[16];
    int fd = open("data/big.txt", O_RDONLY);
    if (fd < 0 || !a || !b)
        return 1;
    struct iovec iov[2] = {{a, big}, {small, sizeof small}};
    show("readv([2 MiB, 16 B])", CALL(SYS_readv, fd, iov, 2));
    printf("first %016llx second %.16s\n", (unsigned long long)fnv(a, big), (char *)small);
    struct iovec iov2[2] = {{small, sizeof small}, {b, 3 << 20}};
    lseek(fd, 0, SEEK_SET);
    long n = CALL(SYS_readv, fd, iov2, 2);
    show("readv([16 B, 3 MiB]) (to the end)", n);
    printf("first %.16s second %016llx\n", (char *)small,
           (unsigned long long)fnv(b, n > 16 ? (size_t)n - 16 : 0));
    lseek(fd, 0, SEEK_SET);
    show("read(3 MiB) (to the end)", n = CALL(SYS_read, fd, b, 3 << 20));
    printf("read %016llx\n", (unsigned long long)fnv(b, n > 0 ? (size_t)n : 0));
    return 0;
}

static void cat(const char *what, int dirfd, const char *path) {
    char buf[64] = {0};
    int fd = (int)CALL(SYS_openat, dirfd, path, O_RDONLY);
    if (fd < 0) {
        show(what, fd);
        return;
    }
    long n = read(fd, buf, sizeof buf - 1);
    close(fd);
    printf("%-44s = %s", what, n > 0 ? buf : "(empty)\n");
}

/* `..` after a symlink goes to the parent of the link's target. */
static int dotdot(void) {
    cat("open(data/tree/a/../x)", AT_FDCWD, "data/tree/a/../x");
    cat("open(data/tree/dir/sub/../x)", AT_FDCWD, "data/tree/dir/sub/../x");
    cat("open(data/tree/a/../../x)", AT_FDCWD, "data/tree/a/../../x");
    int d = open("data/tree/a", O_RDONLY | O_DIRECTORY);
    show("open(data/tree/a, O_DIRECTORY)", d);
    cat("openat(a, ../x)", d, "../x");
    cat("openat(a, y)", d, "y");
    show("chdir(data/tree/a)", CALL(SYS_chdir, "data/tree/a"));
    cat("open(../x) from a", AT_FDCWD, "../x");
    cat("open(y) from a", AT_FDCWD, "y");
    show("chdir(..)", CALL(SYS_chdir, ".."));
    cat("open(x) from a/..", AT_FDCWD, "x");
    return 0;
}

/* readlink of a file that is not a symlink, and realpath. */
static int readlink_mode(void) {
    char buf[256];
    show("readlink(data/poem.txt)", CALL(SYS_readlink, "data/poem.txt", buf, sizeof buf));
    show("readlink(data)", CALL(SYS_readlink, "data", buf, sizeof buf));
    show("readlink(data/missing)", CALL(SYS_readlink, "data/missing", buf, sizeof buf));
    long n = CALL(SYS_readlink, "data/tree/a", buf, sizeof buf);
    show("readlink(data/tree/a)", n);
    if (n > 0)
        printf("  -> %.*s\n", (int)n, buf);
    show("readlinkat(AT_FDCWD, data/poem.txt)",
         CALL(SYS_readlinkat, AT_FDCWD, "data/poem.txt", buf, sizeof buf));
    char *r = realpath("data/tree/a/../x", NULL);
    /* Natively the path is the host's; from /data on it is the same. */
    const char *tail = r ? strstr(r, "/data/") : NULL;
    printf("realpath(data/tree/a/../x) = %s\n", tail ? tail : (r ? r : strerror(errno)));
    r = realpath("data/poem.txt", NULL);
    tail = r ? strstr(r, "/data/") : NULL;
    printf("realpath(data/poem.txt) = %s\n", tail ? tail : (r ? r : strerror(errno)));
    return 0;
}

/* openat with a dirfd that is not a directory. */
static int dirfd_mode(void) {
    int f = open("data/poem.txt", O_RDONLY);
    show("open(data/poem.txt)", f);
    show("openat(file, x)", CALL(SYS_openat, f, "x", O_RDONLY));
    show("openat(file, .)", CALL(SYS_openat, f, ".", O_RDONLY));
    show("openat(file, \"\")", CALL(SYS_openat, f, "", O_RDONLY));
    int g = (int)CALL(SYS_openat, f, "/data/poem.txt", O_RDONLY);
    show("openat(file, /data/poem.txt) (absolute)", g >= 0 ? 0 : -1);
    show("openat(999, x)", CALL(SYS_openat, 999, "x", O_RDONLY));
    show("openat(-5, x)", CALL(SYS_openat, -5, "x", O_RDONLY));
    struct stat st;
    show("newfstatat(file, x)", CALL(SYS_newfstatat, f, "x", &st, 0));
    show("faccessat(file, x)", CALL(SYS_faccessat, f, "x", R_OK));
    char buf[16];
    show("readlinkat(file, x)", CALL(SYS_readlinkat, f, "x", buf, sizeof buf));
    show("newfstatat(file, \"\", AT_EMPTY_PATH)",
         CALL(SYS_newfstatat, f, "", &st, AT_EMPTY_PATH));
    return 0;
}

/* Calls that write to the file system, on a read-only root. */
static int erofs(void) {
    struct timespec ts[2] = {{0, UTIME_NOW}, {0, UTIME_NOW}};
    if (access(".", W_OK) == 0 || errno != EROFS) {
        fprintf(stderr, "regress erofs: the root is not read-only: refusing to write to it\n");
        return 1;
    }
    show("mkdir(data/new)", CALL(SYS_mkdir, "data/new", 0755));
    show("mkdir(data)", CALL(SYS_mkdir, "data", 0755));
    show("mkdir(nope/new)", CALL(SYS_mkdir, "nope/new", 0755));
    show("mkdirat(AT_FDCWD, data/new)", CALL(SYS_mkdirat, AT_FDCWD, "data/new", 0755));
    show("unlink(data/poem.txt)", CALL(SYS_unlink, "data/poem.txt"));
    show("unlink(data/missing)", CALL(SYS_unlink, "data/missing"));
    show("unlink(nope/x)", CALL(SYS_unlink, "nope/x"));
    show("unlinkat(data/tree/dir, AT_REMOVEDIR)",
         CALL(SYS_unlinkat, AT_FDCWD, "data/tree/dir", AT_REMOVEDIR));
    show("unlinkat(bad flags)", CALL(SYS_unlinkat, AT_FDCWD, "data/poem.txt", 0x1234));
    show("rmdir(data/tree)", CALL(SYS_rmdir, "data/tree"));
    show("rmdir(data/missing)", CALL(SYS_rmdir, "data/missing"));
    show("rename(data/poem.txt, data/p2)", CALL(SYS_rename, "data/poem.txt", "data/p2"));
    show("rename(data/missing, data/p2)", CALL(SYS_rename, "data/missing", "data/p2"));
    show("renameat(poem.txt, p2)",
         CALL(SYS_renameat, AT_FDCWD, "data/poem.txt", AT_FDCWD, "data/p2"));
    show("renameat2(poem.txt, p2, 0)",
         CALL(SYS_renameat2, AT_FDCWD, "data/poem.txt", AT_FDCWD, "data/p2", 0));
    show("renameat2(bad flags)",
         CALL(SYS_renameat2, AT_FDCWD, "data/poem.txt", AT_FDCWD, "data/p2", 0x100));
    show("link(data/poem.txt, data/p2)", CALL(SYS_link, "data/poem.txt", "data/p2"));
    show("link(data/missing, data/p2)", CALL(SYS_link, "data/missing", "data/p2"));
    show("linkat(poem.txt, p2)",
         CALL(SYS_linkat, AT_FDCWD, "data/poem.txt", AT_FDCWD, "data/p2", 0));
    show("symlink(x, data/s)", CALL(SYS_symlink, "x", "data/s"));
    show("symlink(x, data/poem.txt)", CALL(SYS_symlink, "x", "data/poem.txt"));
    show("symlinkat(x, data/s)", CALL(SYS_symlinkat, "x", AT_FDCWD, "data/s"));
    show("chmod(data/poem.txt)", CALL(SYS_chmod, "data/poem.txt", 0600));
    show("chmod(data/missing)", CALL(SYS_chmod, "data/missing", 0600));
    int fd = open("data/poem.txt", O_RDONLY);
    show("fchmod(poem.txt fd)", CALL(SYS_fchmod, fd, 0600));
    show("fchmod(999)", CALL(SYS_fchmod, 999, 0600));
    show("fchmodat(data/poem.txt)", CALL(SYS_fchmodat, AT_FDCWD, "data/poem.txt", 0600));
    show("chown(data/poem.txt)", CALL(SYS_chown, "data/poem.txt", 0, 0));
    show("fchown(poem.txt fd)", CALL(SYS_fchown, fd, 0, 0));
    show("fchown(999)", CALL(SYS_fchown, 999, 0, 0));
    show("lchown(data/tree/a)", CALL(SYS_lchown, "data/tree/a", 0, 0));
    show("fchownat(data/poem.txt)", CALL(SYS_fchownat, AT_FDCWD, "data/poem.txt", 0, 0, 0));
    show("truncate(data/poem.txt, 0)", CALL(SYS_truncate, "data/poem.txt", 0L));
    show("truncate(data, 0)", CALL(SYS_truncate, "data", 0L));
    show("truncate(data/poem.txt, -1)", CALL(SYS_truncate, "data/poem.txt", -1L));
    show("ftruncate(poem.txt fd, 0)", CALL(SYS_ftruncate, fd, 0L));
    show("ftruncate(999, 0)", CALL(SYS_ftruncate, 999, 0L));
    show("utimensat(data/poem.txt)", CALL(SYS_utimensat, AT_FDCWD, "data/poem.txt", ts, 0));
    show("utimensat(data/missing)", CALL(SYS_utimensat, AT_FDCWD, "data/missing", ts, 0));
    show("mknod(data/n, S_IFIFO)", CALL(SYS_mknod, "data/n", S_IFIFO | 0644, 0));
    show("mknod(data/n, S_IFDIR)", CALL(SYS_mknod, "data/n", S_IFDIR | 0644, 0));
    show("mknodat(data/n, S_IFREG)", CALL(SYS_mknodat, AT_FDCWD, "data/n", S_IFREG | 0644, 0));
    show("creat(data/new)", CALL(SYS_creat, "data/new", 0644));
    show("creat(data/poem.txt)", CALL(SYS_creat, "data/poem.txt", 0644));
    show("creat(nope/new)", CALL(SYS_creat, "nope/new", 0644));
    return 0;
}

/* A page of .data of its own, and a function on a page of its own. */
static struct {
    volatile int value;
    char pad[4096 - sizeof(int)];
} __attribute__((aligned(4096))) data_page = {42, {1}};

__attribute__((noinline, aligned(4096))) static int text_function(int x) {
    return x * 3 + 1;
}

static int madvise_mode(const char *what) {
    if (!strcmp(what, "data")) {
        data_page.value = 7;
        show("madvise(.data page, DONTNEED)", CALL(SYS_madvise, &data_page, 4096, MADV_DONTNEED));
        printf(".data value after DONTNEED: %d\n", data_page.value);
    } else if (!strcmp(what, "text")) {
        int (*volatile f)(int) = text_function;
        printf("text_function(4) = %d\n", f(4));
        show("madvise(text page, DONTNEED)",
             CALL(SYS_madvise, (void *)((uintptr_t)f & ~4095ul), 4096, MADV_DONTNEED));
        printf("text_function(4) after DONTNEED = %d\n", f(4));
    } else if (!strcmp(what, "file")) {
        int fd = open("data/poem.txt", O_RDONLY);
        char *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED)
            return 1;
        printf("mapped: %.12s\n", p);
        memcpy(p, "DIRTY DIRTY ", 12);
        printf("dirtied: %.12s\n", p);
        show("madvise(file mapping, DONTNEED)", CALL(SYS_madvise, p, 4096, MADV_DONTNEED));
        printf("after DONTNEED: %.12s\n", p);
    } else {
        return 2;
    }
    return 0;
}

/* Reads whose buffer ends before the count does. */
static int shortread(void) {
    char *p = mmap(NULL, 2 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    munmap(p + 4096, 4096);
    int fd = open("data/poem.txt", O_RDONLY);
    show("read(10 into the last 4 bytes)", CALL(SYS_read, fd, p + 4092, 10));
    printf("  got %.4s, at %ld\n", p + 4092, (long)lseek(fd, 0, SEEK_CUR));
    show("read(10 into the unmapped page)", CALL(SYS_read, fd, p + 4096, 10));
    show("pread(10 into the last 4 bytes, at 8)", CALL(SYS_pread64, fd, p + 4092, 10L, 8L));
    printf("  got %.4s\n", p + 4092);
    lseek(fd, 0, SEEK_SET);
    char small[8];
    struct iovec iov[2] = {{small, 8}, {p + 4094, 100}};
    show("readv([8 B, 100 B with 2 mapped])", CALL(SYS_readv, fd, iov, 2));
    printf("  at %ld\n", (long)lseek(fd, 0, SEEK_CUR));
    show("write(1, 10 bytes with 4 mapped)", CALL(SYS_write, 1, p + 4092, 10));
    printf("\n");
    struct iovec wv[2] = {{"ab", 2}, {p + 4096, 4}};
    show("writev(1, [2 B, unmapped])", CALL(SYS_writev, 1, wv, 2));
    printf("\n");
    return 0;
}

/* futex operations on addresses that are no futex word. */
static int futex_mode(void) {
    static int word;
    int *unaligned = (int *)((char *)&word + 1);
    void *kernel = (void *)0xffffffff81000000ul;
    void *unmapped = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    munmap(unmapped, 4096);
    struct {
        const char *name;
        void *addr;
    } a[] = {{"NULL", NULL}, {"unaligned", unaligned}, {"kernel", kernel},
             {"unmapped", unmapped}, {"word", &word}};
    char what[80];
    for (int i = 0; i < 5; i++) {
        for (int priv = 0; priv < 2; priv++) {
            int p = priv ? FUTEX_PRIVATE_FLAG : 0;
            const char *s = priv ? "_PRIVATE" : "";
            snprintf(what, sizeof what, "WAKE%s(%s)", s, a[i].name);
            show(what, CALL(SYS_futex, a[i].addr, FUTEX_WAKE | p, 1, NULL, NULL, 0));
            snprintf(what, sizeof what, "WAKE_BITSET%s(%s)", s, a[i].name);
            show(what, CALL(SYS_futex, a[i].addr, FUTEX_WAKE_BITSET | p, 1, NULL, NULL, -1));
            snprintf(what, sizeof what, "REQUEUE%s(%s, word)", s, a[i].name);
            show(what, CALL(SYS_futex, a[i].addr, FUTEX_REQUEUE | p, 1, 1, &word, 0));
            snprintf(what, sizeof what, "REQUEUE%s(word, %s)", s, a[i].name);
            show(what, CALL(SYS_futex, &word, FUTEX_REQUEUE | p, 1, 1, a[i].addr, 0));
            snprintf(what, sizeof what, "CMP_REQUEUE%s(%s, word)", s, a[i].name);
            show(what, CALL(SYS_futex, a[i].addr, FUTEX_CMP_REQUEUE | p, 1, 1, &word, 0));
            snprintf(what, sizeof what, "WAKE_OP%s(%s, word)", s, a[i].name);
            show(what, CALL(SYS_futex, a[i].addr, FUTEX_WAKE_OP | p, 1, 1, &word,
                            FUTEX_OP(FUTEX_OP_ADD, 1, FUTEX_OP_CMP_EQ, 0)));
            snprintf(what, sizeof what, "WAKE_OP%s(word, %s)", s, a[i].name);
            show(what, CALL(SYS_futex, &word, FUTEX_WAKE_OP | p, 1, 1, a[i].addr,
                            FUTEX_OP(FUTEX_OP_ADD, 1, FUTEX_OP_CMP_EQ, 0)));
            snprintf(what, sizeof what, "WAIT%s(%s)", s, a[i].name);
            show(what, CALL(SYS_futex, a[i].addr, FUTEX_WAIT | p, 12345, NULL, NULL, 0));
        }
    }
    printf("word = %d\n", word);
    return 0;
}

/* clone with CLONE_SETTLS and a TLS that no thread may have; the child (if any) exits at once. */
static long raw_clone(unsigned long flags, void *stack, unsigned long tls) {
    long r;
    register unsigned long r10 __asm__("r10") = 0;
    register unsigned long r8 __asm__("r8") = tls;
    __asm__ volatile("syscall\n\t"
                     "test %%rax, %%rax\n\t"
                     "jnz 1f\n\t"
                     "mov $60, %%eax\n\t"
                     "xor %%edi, %%edi\n\t"
                     "syscall\n\t"
                     "1:"
                     : "=a"(r)
                     : "0"((long)SYS_clone), "D"(flags), "S"(stack), "d"(0), "r"(r10), "r"(r8)
                     : "rcx", "r11", "memory");
    return r;
}

static int settls(void) {
    static char stack[1 << 14] __attribute__((aligned(16)));
    unsigned long flags = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD |
                          CLONE_SYSVSEM | CLONE_SETTLS;
    unsigned long bad[] = {0x8000000000000000ul, 0x7ffffffff000ul, 1ul << 47, ~0ul};
    for (int i = 0; i < 4; i++) {
        long r = raw_clone(flags, stack + sizeof stack, bad[i]);
        if (r < 0) {
            errno = (int)-r;
            r = -1;
        }
        char what[64];
        snprintf(what, sizeof what, "clone(CLONE_SETTLS, %#lx)", bad[i]);
        show(what, r > 0 ? 1 : r);
    }
    for (int i = 0; i < 4; i++) {
        char what[64];
        snprintf(what, sizeof what, "arch_prctl(ARCH_SET_FS, %#lx)", bad[i]);
        show(what, CALL(SYS_arch_prctl, 0x1002, bad[i]));
    }
    return 0;
}

/* A thread blocked opening a FIFO must not stop the others' file calls. */
static void *fifo_reader(void *arg) {
    (void)arg;
    int fd = open("fifo", O_RDONLY);
    char buf[16] = {0};
    long n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
    printf("reader: open %s, read %ld: %s\n", fd >= 0 ? "ok" : strerror(errno), n, buf);
    return NULL;
}

static int fifo(void) {
    pthread_t t;
    pthread_create(&t, NULL, fifo_reader, NULL);
    /* Give the reader time to block in its open (if it has not, the check proves less). */
    struct timespec ts = {0, 300 * 1000 * 1000};
    nanosleep(&ts, NULL);
    int fd = open("file", O_RDONLY);
    char buf[16] = {0};
    long n = read(fd, buf, sizeof buf - 1);
    close(fd);
    struct stat st;
    printf("main: open+read while the reader waits: %ld %s", n, buf);
    printf("main: stat %d\n", stat("file", &st));
    fflush(stdout);
    int w = open("fifo", O_WRONLY);
    if (w < 0)
        printf("main: open fifo for writing: %s\n", strerror(errno));
    else if (write(w, "hello", 5) != 5)
        printf("main: write to the fifo failed\n");
    fflush(stdout);
    close(w);
    pthread_join(t, NULL);
    return 0;
}

/* 40 threads each writev 16 iovecs of one 1 MiB buffer to stdout, which nobody reads. */
static char *mib;
static void *writer(void *arg) {
    (void)arg;
    struct iovec iov[16];
    for (int i = 0; i < 16; i++)
        iov[i] = (struct iovec){mib, 1 << 20};
    writev(1, iov, 16);
    return NULL;
}

static int writev_mem(void) {
    mib = malloc(1 << 20);
    memset(mib, 'x', 1 << 20);
    pthread_t t[40];
    for (int i = 0; i < 40; i++)
        pthread_create(&t[i], NULL, writer, NULL);
    /* Let every writer get into its writev (no timing is asserted: this only gives them time). */
    sleep(1);
    fprintf(stderr, "writers started\n");
    _exit(0);
}

/* 16 anonymous 64 MiB mappings, one byte written in each: on Linux a few pages are resident. */
static int untouched(void) {
    for (int i = 0; i < 16; i++) {
        char *p = mmap(NULL, 64 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) {
            printf("mmap %d: %s\n", i, strerror(errno));
            return 1;
        }
        p[i * 4096] = 1;
    }
    printf("16 x 64 MiB mapped, one page written in each\n");
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: regress readv|dotdot|readlink|dirfd|erofs|madvise-data|"
                        "madvise-text|madvise-file|shortread|futex|settls|fifo|writev-mem|untouched\n");
        return 2;
    }
    const char *m = argv[1];
    if (!strcmp(m, "readv"))
        return readv_big();
    if (!strcmp(m, "dotdot"))
        return dotdot();
    if (!strcmp(m, "readlink"))
        return readlink_mode();
    if (!strcmp(m, "dirfd"))
        return dirfd_mode();
    if (!strcmp(m, "erofs"))
        return erofs();
    if (!strncmp(m, "madvise-", 8))
        return madvise_mode(m + 8);
    if (!strcmp(m, "shortread"))
        return shortread();
    if (!strcmp(m, "futex"))
        return futex_mode();
    if (!strcmp(m, "settls"))
        return settls();
    if (!strcmp(m, "fifo"))
        return fifo();
    if (!strcmp(m, "writev-mem"))
        return writev_mem();
    if (!strcmp(m, "untouched"))
        return untouched();
    fprintf(stderr, "regress: unknown mode %s\n", m);
    return 2;
}
