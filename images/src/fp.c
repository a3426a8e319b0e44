/* Floating point: x87 and SSE2 arithmetic, libm, printf of doubles. */
#include <math.h>
#include <stdio.h>

int main(void) {
    double s = 0;
    for (int i = 1; i <= 100000; i++)
        s += 1.0 / ((double)i * i);
    printf("basel: %.12f (pi^2/6 = %.12f)\n", s, M_PI * M_PI / 6);
    printf("sqrt(2) = %.15f\n", sqrt(2.0));
    printf("sin(1) = %.15f, exp(1) = %.15f\n", sin(1.0), exp(1.0));
    long double x = 1.0L;
    for (int i = 0; i < 50; i++)
        x = x * 1.1L + 0.5L;
    printf("long double: %.10Lf\n", x);
    float f = 0.1f;
    for (int i = 0; i < 10; i++)
        f *= 3.0f;
    printf("float: %.6e\n", f);
    return 0;
}
