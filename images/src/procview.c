/* What a program sees of /proc and /sys under popvmm: its own machine (island i is CPU i), never
 * the host's or popvmm's. Prints one line per probe. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void first_line(const char *path) {
    char b[256];
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        printf("%s: %s\n", path, strerror(errno));
        return;
    }
    ssize_t n = read(fd, b, sizeof b - 1);
    close(fd);
    b[n > 0 ? n : 0] = 0;
    char *nl = strchr(b, '\n');
    if (nl) *nl = 0;
    printf("%s: %s\n", path, b);
}

static int count(const char *path, const char *prefix) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char line[256];
    int n = 0;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, prefix, strlen(prefix)) == 0) n++;
    fclose(f);
    return n;
}

int main(void) {
    printf("sysconf(_SC_NPROCESSORS_ONLN): %ld\n", sysconf(_SC_NPROCESSORS_ONLN));
    first_line("/sys/devices/system/cpu/online");
    first_line("/sys/devices/system/cpu/cpu1/topology/thread_siblings_list");
    first_line("/sys/devices/system/cpu/cpu1/topology/core_siblings_list");
    printf("/proc/cpuinfo processors: %d\n", count("/proc/cpuinfo", "processor"));
    printf("/proc/self/maps [stack] lines: %d\n", count("/proc/self/maps", "") > 0);
    first_line("/proc/self/mem");
    first_line("/proc/self/environ");
    first_line("/sys/kernel/mm/transparent_hugepage/enabled");
    return 0;
}
