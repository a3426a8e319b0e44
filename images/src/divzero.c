/* Integer division by zero: #DE, SIGFPE. */
#include <stdio.h>

int main(int argc, char **argv) {
    (void)argv;
    volatile int zero = argc - 1;
    printf("dividing\n");
    fflush(stdout);
    printf("%d\n", 100 / zero);
    return 0;
}
