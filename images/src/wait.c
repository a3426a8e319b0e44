/* Blocks until stdin reaches end of file, with a second thread asleep: for the control socket
 * tests (threads listed during a run, shutdown) and stdin pass-through. */
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

static void *sleeper(void *arg) {
    (void)arg;
    for (;;)
        sleep(100);
    return NULL;
}

int main(void) {
    pthread_t t;
    pthread_create(&t, NULL, sleeper, NULL);
    printf("waiting\n");
    fflush(stdout);
    char buf[256];
    long total = 0;
    ssize_t n;
    while ((n = read(0, buf, sizeof buf)) > 0)
        total += n;
    printf("read %ld bytes\n", total);
    return 0;
}
