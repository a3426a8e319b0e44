/* Process-wide kernel state used from threads on other islands: files (open, read, lseek, dup,
 * dup2, fcntl, getcwd, chdir, close), the umask, signal handlers installed and run there, and an
 * exit_group made by a thread that is not on the origin. With --islands 4 the three threads run
 * on islands 1, 2 and 3, one after another, so the output is the same as natively. */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static volatile sig_atomic_t got;

static void on_usr1(int sig) { got = sig; }

static void say(const char *s) {
    /* write(2) through a dup of stdout: the descriptor table is the program's, wherever we run */
    int fd = dup(1);
    if (fd < 0 || write(fd, s, strlen(s)) < 0) _exit(20);
    close(fd);
}

static void *files(void *arg) {
    (void)arg;
    char buf[64] = {0};
    int fd = open("data/poem.txt", O_RDONLY);
    if (fd < 0) { perror("open"); return (void *)1; }
    if (read(fd, buf, 7) != 7) return (void *)2;
    char line[128];
    snprintf(line, sizeof line, "files: first 7 bytes: %s\n", buf);
    say(line);
    off_t at = lseek(fd, 8, SEEK_SET);
    memset(buf, 0, sizeof buf);
    if (read(fd, buf, 5) != 5) return (void *)3;
    snprintf(line, sizeof line, "files: at %ld: %s\n", (long)at, buf);
    say(line);
    int copy = fcntl(fd, F_DUPFD, 40);
    snprintf(line, sizeof line, "files: F_DUPFD >= 40 gave %d, offset there %ld\n", copy,
             (long)lseek(copy, 0, SEEK_CUR));
    say(line);
    if (dup2(copy, 50) != 50) return (void *)4;
    close(copy);
    close(fd);
    snprintf(line, sizeof line, "files: fd 50 still reads at %ld\n", (long)lseek(50, 0, SEEK_CUR));
    say(line);
    return NULL;
}

static void *cwd_and_signals(void *arg) {
    (void)arg;
    char line[256], cwd[128];
    if (chdir("data") != 0) { perror("chdir"); return (void *)5; }
    if (!getcwd(cwd, sizeof cwd)) return (void *)6;
    int fd = open("poem.txt", O_RDONLY);
    /* Only the last component: natively the path is the host's, under popvmm the root's. */
    const char *base = strrchr(cwd, '/');
    snprintf(line, sizeof line, "cwd: .../%s, poem.txt there: %s\n", base ? base + 1 : cwd,
             fd >= 0 ? "yes" : "no");
    say(line);
    if (fd >= 0) close(fd);
    mode_t old = umask(027);
    snprintf(line, sizeof line, "umask: was %03o, now %03o\n", (unsigned)old, (unsigned)umask(027));
    say(line);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sigaction(SIGUSR1, &sa, NULL);
    raise(SIGUSR1);
    snprintf(line, sizeof line, "signals: handler ran for signal %d\n", (int)got);
    say(line);
    signal(SIGUSR2, SIG_IGN);
    raise(SIGUSR2);
    say("signals: SIGUSR2 ignored\n");
    return NULL;
}

static void *ender(void *arg) {
    (void)arg;
    char line[128];
    /* What the other threads changed is the program's, seen from here too. */
    if (!getcwd(line, sizeof line)) return (void *)7;
    const char *base = strrchr(line, '/');
    say("ender: cwd is .../");
    say(base ? base + 1 : line);
    say("\n");
    struct sigaction sa;
    sigaction(SIGUSR1, NULL, &sa);
    snprintf(line, sizeof line, "ender: SIGUSR1 has a handler: %s\n",
             sa.sa_handler == on_usr1 ? "yes" : "no");
    say(line);
    fflush(stdout);
    exit(7); /* exit_group from a thread that is not the main one */
}

int main(void) {
    void *(*steps[])(void *) = {files, cwd_and_signals, ender};
    for (int i = 0; i < 3; i++) {
        pthread_t t;
        void *r;
        if (pthread_create(&t, NULL, steps[i], NULL) != 0) return 10;
        pthread_join(t, &r);
        if (r != NULL) {
            fprintf(stderr, "step %d failed: %ld\n", i, (long)r);
            return 11;
        }
    }
    return 0; /* not reached: the third thread ends the program */
}
