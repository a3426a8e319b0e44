/* Reading from the root file system: open, read, pread, lseek, fstat, stat, directories, access. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int main(void) {
    FILE *f = fopen("data/poem.txt", "r");
    if (!f) {
        perror("fopen data/poem.txt");
        return 1;
    }
    char line[256];
    int n = 0;
    while (fgets(line, sizeof line, f))
        printf("%2d: %s", ++n, line);
    fclose(f);

    int fd = open("data/poem.txt", O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        perror("open/fstat");
        return 1;
    }
    printf("size %lld, regular %d\n", (long long)st.st_size, S_ISREG(st.st_mode));
    char buf[16] = {0};
    if (pread(fd, buf, 10, 4) != 10)
        return 1;
    printf("pread at 4: %s\n", buf);
    off_t end = lseek(fd, 0, SEEK_END);
    printf("lseek end: %lld\n", (long long)end);
    int fd2 = dup(fd);
    printf("dup ok: %d\n", fd2 > fd);
    close(fd2);
    close(fd);

    DIR *d = opendir("data");
    if (!d) {
        perror("opendir");
        return 1;
    }
    char *names[64];
    int count = 0;
    struct dirent *e;
    while ((e = readdir(d)) && count < 64)
        if (e->d_name[0] != '.')
            names[count++] = strdup(e->d_name);
    closedir(d);
    qsort(names, count, sizeof *names, cmp);
    for (int i = 0; i < count; i++)
        printf("entry: %s\n", names[i]);

    printf("access existing: %d\n", access("data/poem.txt", R_OK));
    errno = 0;
    int r = open("data/missing.txt", O_RDONLY);
    printf("open missing: %d %s\n", r, strerror(errno));
    errno = 0;
    r = open("../../../../etc/passwd-not-here", O_RDONLY);
    printf("open escaping: %d %s\n", r, strerror(errno));
    if (stat("data", &st) == 0)
        printf("data is a directory: %d\n", S_ISDIR(st.st_mode));

    /* The usual character devices. */
    int null = open("/dev/null", O_WRONLY);
    printf("write /dev/null: %zd\n", write(null, "discard", 7));
    close(null);
    unsigned char rnd[16];
    int ur = open("/dev/urandom", O_RDONLY);
    printf("read /dev/urandom: %zd\n", read(ur, rnd, sizeof rnd));
    close(ur);
    printf("stat /dev/null is a char device: %d\n", stat("/dev/null", &st) == 0 && S_ISCHR(st.st_mode));
    return 0;
}
