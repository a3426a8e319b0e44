/* Segmentation faults: a NULL write, a wild address, or a write to read-only memory (mprotect). */
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "null";
    printf("mode %s\n", mode);
    fflush(stdout);
    if (strcmp(mode, "null") == 0) {
        *(volatile int *)0 = 1;
    } else if (strcmp(mode, "wild") == 0) {
        *(volatile int *)0x7654321000ul = 1;
    } else if (strcmp(mode, "mprotect") == 0) {
        char *p = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        p[0] = 'a';
        p[4096] = 'b';
        if (mprotect(p, 4096, PROT_READ) != 0)
            return 2;
        printf("read back %c%c\n", p[0], p[4096]);
        p[4096] = 'c'; /* still writable */
        fflush(stdout);
        *(volatile char *)p = 'x'; /* faults */
    } else if (strcmp(mode, "rodata") == 0) {
        static const char msg[] = "read only";
        *(volatile char *)msg = 'R';
    } else if (strcmp(mode, "munmap") == 0) {
        char *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        p[0] = 1;
        munmap(p, 4096);
        *(volatile char *)p = 2;
    }
    printf("not reached\n");
    return 0;
}
