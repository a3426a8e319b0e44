/* abort(): SIGABRT through tgkill to itself. */
#include <stdio.h>
#include <stdlib.h>

int main(void) {
    printf("about to abort\n");
    fflush(stdout);
    fprintf(stderr, "goodbye\n");
    abort();
}
