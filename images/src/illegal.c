/* An invalid opcode: #UD, SIGILL. */
#include <stdio.h>

int main(void) {
    printf("ud2\n");
    fflush(stdout);
    __asm__ volatile("ud2");
    return 0;
}
