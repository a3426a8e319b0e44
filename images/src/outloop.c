/* The raw exit floor: a port write from user mode in a loop. Only meaningful under
 * `popvmm launch --allow-port-io` (natively, and on an island without that flag, it faults). */
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 100000;
    for (long i = 0; i < n; i++)
        __asm__ volatile("outb %%al, $0x80" ::"a"(0));
    printf("%ld exits\n", n);
    return 0;
}
