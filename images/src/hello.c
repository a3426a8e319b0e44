/* The smallest guest: argv, a default environment variable, stdout and stderr, exit status. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    printf("hello from an island\n");
    for (int i = 1; i < argc; i++)
        printf("argv[%d] = %s\n", i, argv[i]);
    const char *v = getenv("POPVMM_TEST");
    printf("POPVMM_TEST=%s\n", v ? v : "(unset)");
    fprintf(stderr, "this line goes to stderr\n");
    fflush(stdout);
    return argc > 1 && strcmp(argv[1], "fail") == 0 ? 3 : 0;
}
